//! # sidecar
//!
//! A service-mesh sidecar assembled from the proxy crates: listeners, routes and
//! clusters from a YAML file, live reload (SIGHUP or `POST /reload` on the admin
//! port), graceful drain on SIGTERM, and clusters, endpoints (and listeners and
//! routes) from an xDS control plane when the file has an `xds` section.
//!
//! ```text
//! cargo run --release -p sidecar                 # embedded default, demo upstream
//! curl http://127.0.0.1:15001/                   # through the sidecar
//! curl http://127.0.0.1:15000/stats/prometheus   # admin
//! sidecar --config sidecar.yaml [--validate]
//! sidecar --config sidecar.yaml --upgrade-socket /run/sidecar.sock            # serves upgrades
//! sidecar --config sidecar.yaml --upgrade-socket /run/sidecar.sock --upgrade  # takes over
//! sidecar ... --upgrade --upgrade-window 2s   # live connections come over within 2 s
//! ```

mod quic;
mod xds;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use clap::Parser;
use proxy_core::{config::Config, snapshot::Snapshot, ConfigError, DisplayChain, Registry, Server};
use proxy_upgrade::{UpgradeClient, UpgradeHandle, UpgradeServer};
use proxy_xds::XdsClient;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEFAULT_CONFIG: &str = include_str!("../default.yaml");

/// A service-mesh sidecar built from the proxy crates.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The YAML config; without it the embedded default runs with a demo upstream.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Check the config and exit.
    #[arg(long)]
    validate: bool,
    /// Serve hot upgrades on this Unix socket: a new process started with the same
    /// path and `--upgrade` takes the listeners over, then this one drains and exits.
    /// If the new process dies within its hand-off window, this one takes the
    /// listeners back and keeps the connections it had not handed over yet.
    #[arg(long, value_name = "PATH")]
    upgrade_socket: Option<PathBuf>,
    /// Start as the new process of a hot upgrade: take the listeners of the process
    /// serving `--upgrade-socket`, serve on them, then tell it to drain and exit.
    #[arg(long, requires = "upgrade_socket")]
    upgrade: bool,
    /// With `--upgrade`: the old process hands its idle HTTP/1.1 keep-alive
    /// connections and its Bolt and Dubbo connections over (TLS and HTTP/2 drain),
    /// each at a moment drawn evenly over this window (`500ms`, `2s`), so they do not
    /// all come at once.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    upgrade_window: Duration,
    /// Log filter (`RUST_LOG` syntax), e.g. `info` or `proxy_core=debug`.
    #[arg(long, default_value = "info", env = "RUST_LOG")]
    log: String,
}

/// `250ms`, `2s` or `1.5s`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration like 500ms or 2s");
    let (number, unit) = match s.strip_suffix("ms") {
        Some(n) => (n, 1e-3),
        None => (s.strip_suffix('s').ok_or_else(bad)?, 1.0),
    };
    let value: f64 = number.trim().parse().map_err(|_| bad())?;
    Duration::try_from_secs_f64(value * unit).map_err(|_| bad())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log).unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Reads the config file; relative paths in it resolve from its directory.
/// The `quic` section's `alt_svc` headers are added to the routes it advertises on.
fn load(path: &Path) -> Result<Config, ConfigError> {
    Config::load(path).and_then(quic::advertise)
}

/// Every capability the sidecar offers, by config name.
///
/// - proxy-lb: `lb` (`typed`) random, round_robin, least_request, ring_hash, maglev,
///   zone_aware, subset; filters zone_routing, traffic_steering; cluster extensions
///   outlier_detection, health_check.
/// - proxy-tls: network filter `tls` (termination, mTLS, Guomi, offload), transport
///   `tls` (origination).
/// - proxy-codec: protocols `bolt` and `dubbo` on listeners (or detected by `auto`)
///   and clusters.
/// - proxy-filters: network filters tcp_proxy, connection_limit, connection_fault;
///   HTTP filters fault, mirror, rbac, header_rewrite, access_log, local_rate_limit,
///   adaptive_concurrency.
fn registry() -> Registry {
    registry_with(proxy_tls::TlsRuntime::default())
}

/// [`registry`] with proxy-tls on `tls` (whose `secret:` references an xDS client's
/// SDS fills).
fn registry_with(tls: proxy_tls::TlsRuntime) -> Registry {
    let mut registry = Registry::default();
    proxy_lb::register(&mut registry);
    proxy_tls::register_with(&mut registry, tls);
    proxy_codec::register(&mut registry);
    proxy_filters::register(&mut registry);
    registry
}

fn run(args: Args) -> anyhow::Result<()> {
    let upgrade = UpgradeArgs {
        socket: args.upgrade_socket,
        take_over: args.upgrade,
        window: args.upgrade_window,
        config: args.config.clone(),
    };
    let Some(path) = args.config else {
        anyhow::ensure!(!args.validate, "--validate needs --config FILE");
        return run_default(upgrade);
    };
    let config = load(&path)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("loading {}", path.display()))?;
    let xds = xds::Xds::from_config(&config)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("loading {}", path.display()))?;
    let quic = quic::prepare(&config)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("loading {}", path.display()))?;
    let (config, registry) = match &xds {
        Some(xds) => (xds.initial_config(), registry_with(xds.tls_runtime())),
        None => (config, registry()),
    };
    if args.validate {
        // Builds every part of the config as a run would, and starts nothing: no
        // listener, no thread, no file opened for writing.
        Snapshot::build(config, &registry, None).map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("config ok");
        return Ok(());
    }
    let server =
        Server::new(config, registry).map_err(|e| anyhow::anyhow!("{}", DisplayChain(&e)))?;
    let source_path = path.clone();
    let server = server.with_config_source(Arc::new(move || load(&source_path)));
    let server = match &xds {
        Some(xds) => xds.install(server),
        None => server,
    };
    // HTTP/3 listeners of the `quic` section, stopped when the server has drained.
    let _quic = quic.map(|q| quic::spawn(q, &server)).transpose()?;
    serve(server, upgrade, xds.map(xds::Xds::into_client))
}

fn run_default(upgrade: UpgradeArgs) -> anyhow::Result<()> {
    let upstream = proxy_core::demo::start_upstream("the sidecar's demo upstream")
        .context("starting the demo upstream")?;
    let yaml = DEFAULT_CONFIG.replace("127.0.0.1:1\"", &format!("{upstream}\""));
    let config = Config::from_yaml(&yaml).map_err(|e| anyhow::anyhow!("embedded config: {e}"))?;
    tracing::info!(%upstream, "demo upstream started; try: curl http://127.0.0.1:15001/");
    let server =
        Server::new(config, registry()).map_err(|e| anyhow::anyhow!("{}", DisplayChain(&e)))?;
    serve(server, upgrade, None)
}

/// The hot upgrade flags, and the config file (a server started again after a
/// roll-back reloads from it).
#[derive(Clone)]
struct UpgradeArgs {
    socket: Option<PathBuf>,
    take_over: bool,
    window: Duration,
    config: Option<PathBuf>,
}

/// Runs `server` until SIGTERM/SIGINT or a hand-off to a new process. With
/// `--upgrade`, first takes the listeners of the process at `--upgrade-socket` (and
/// fails, binding nothing, when there is none), then tells it to stop once serving.
/// The xDS client, if any, starts once the server runs and stops when it drains.
fn serve(server: Server, upgrade: UpgradeArgs, xds: Option<XdsClient>) -> anyhow::Result<()> {
    let mut taking_over = match (&upgrade.socket, upgrade.take_over) {
        (Some(path), true) => Some(
            UpgradeClient::new(path)
                .handoff_window(upgrade.window)
                .connect()
                .map_err(|e| anyhow::anyhow!("{}", DisplayChain(&e)))
                .with_context(|| format!("taking over from the process at {}", path.display()))?,
        ),
        _ => None,
    };
    // Bound before serving (a path in use fails the start), unless the old process
    // holds it until the hand-off.
    let successor = Successor::default();
    let mut upgrades = match (&upgrade.socket, &taking_over) {
        (Some(path), None) => Some(
            UpgradeServer::bind(path)
                .map_err(|e| anyhow::anyhow!("{}", DisplayChain(&e)))?
                .on_rollback(take_back(&server, &upgrade, successor.clone())),
        ),
        _ => None,
    };
    let server = match taking_over.as_mut() {
        Some(u) => server.with_inherited_listeners(u.take_sockets()),
        None => server,
    };
    let handle = server.clone();
    let rollback = (server.clone(), upgrade.clone(), successor.clone());
    // Kept past the run: stopped once the server drained, it waits for the last idle
    // connections to go over to the next process.
    let service: Arc<Mutex<Option<UpgradeHandle>>> = Arc::default();
    let running = service.clone();
    let result = server
        .run_until(async move {
            let _xds = xds.and_then(|client| {
                client
                    .spawn(handle.clone())
                    .inspect_err(|e| tracing::error!(error = %e, "cannot start the xDS client"))
                    .ok()
            });
            if let Some(u) = taking_over {
                match tokio::task::spawn_blocking(move || u.finish_handing_over()).await {
                    Ok(Ok(handover)) => {
                        tracing::info!("took over; the old process hands its idle connections over, drains and exits");
                        adopt(handover, handle.clone());
                    }
                    Ok(Err(e)) => tracing::warn!(error = %DisplayChain(&e), "the old process did not confirm the hand-off"),
                    Err(e) => tracing::warn!(error = %e, "hand-off task failed"),
                }
                let (server, args, successor) = rollback;
                upgrades = upgrade.socket.as_ref().and_then(|path| {
                    UpgradeServer::bind(path)
                        .inspect_err(|e| tracing::error!(error = %DisplayChain(e), "cannot serve upgrades"))
                        .ok()
                        .map(|u| u.on_rollback(take_back(&server, &args, successor)))
                });
            }
            let started = upgrades.and_then(|u| {
                u.spawn(handle.clone())
                    .inspect_err(|e| tracing::error!(error = %DisplayChain(e), "cannot serve upgrades"))
                    .ok()
            });
            *lock(&running) = started;
            handle.wait_for_signals().await;
        })
        .map_err(|e| anyhow::anyhow!("{}", DisplayChain(&e)));
    let service = lock(&service).take();
    if let Some(service) = service {
        // After a roll-back, the connections the server handed out until it drained
        // went to its successor in this process.
        service.stop();
    }
    let again = lock(&successor).take();
    if let Some(thread) = again {
        tracing::info!("rolled back: this process serves on");
        return thread
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the server taken back stopped abruptly")));
    }
    result
}

/// The server this process starts on its own listening sockets when a new process
/// dies after it said ready, running on a thread of its own until SIGTERM.
type Successor = Arc<Mutex<Option<std::thread::JoinHandle<anyhow::Result<()>>>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The roll-back of a hot upgrade: a server with `server`'s current config, on the
/// listening sockets taken back, serving upgrades on the same path again; returned
/// once it runs, to adopt the connections `server` still hands out.
fn take_back(
    server: &Server,
    upgrade: &UpgradeArgs,
    successor: Successor,
) -> impl Fn(Vec<(String, std::os::fd::OwnedFd)>) -> Option<Server> + Send + Sync + 'static {
    let (server, upgrade) = (server.clone(), upgrade.clone());
    move |sockets| {
        let config = Config::clone(&server.snapshot().config);
        let again = Server::new(config, registry())
            .inspect_err(|e| tracing::error!(error = %DisplayChain(e), "cannot start again on the listeners"))
            .ok()?;
        let again = match upgrade.config.clone() {
            Some(path) => again.with_config_source(Arc::new(move || load(&path))),
            None => again,
        }
        .with_inherited_listeners(sockets);
        let args = UpgradeArgs {
            take_over: false,
            ..upgrade.clone()
        };
        let running = again.clone();
        let thread = std::thread::Builder::new()
            .name("sidecar-rolled-back".into())
            .spawn(move || serve(running, args, None))
            .inspect_err(|e| tracing::error!(error = %e, "cannot start again on the listeners"))
            .ok()?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while again.listener_addresses().is_empty() {
            if thread.is_finished() || std::time::Instant::now() > deadline {
                tracing::error!("the server taken back did not start");
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        *lock(&successor) = Some(thread);
        Some(again)
    }
}

/// Serves the connections the old process hands over, on a thread of their own
/// (each waits for the old process's next one).
fn adopt(handover: proxy_upgrade::Handover, server: Server) {
    let spawned = std::thread::Builder::new()
        .name("upgrade-adopt".into())
        .spawn(move || match handover.adopt_into(&server) {
            Ok(n) => tracing::info!(
                connections = n,
                "adopted the old process's idle connections"
            ),
            Err(e) => {
                tracing::warn!(error = %DisplayChain(&e), "the hand-over of connections stopped")
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot receive the old process's connections");
    }
}
