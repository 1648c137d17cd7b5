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
//! kill -USR2 $PID                              # the serving process starts the new binary itself
//! ```

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context as _;
use clap::Parser;
use proxy_core::{config::Config, snapshot::Snapshot, ConfigError, DisplayChain, Registry, Server};
use proxy_quic::section::{self as quic, QuicRun};
use proxy_upgrade::{UpgradeArgs, UpgradeOptions};
use proxy_xds::Bootstrap;

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
    /// Hot upgrade: `--upgrade-socket PATH` (SIGUSR2 starts the new binary),
    /// `--upgrade`, `--upgrade-window DURATION`.
    #[command(flatten)]
    upgrade: UpgradeArgs,
    /// Log filter (`RUST_LOG` syntax), e.g. `info` or `proxy_core=debug` (`trace` events
    /// are compiled out of release builds).
    #[arg(long, default_value = "info", env = "RUST_LOG")]
    log: String,
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
    let upgrade = args
        .upgrade
        .into_options()
        .context("resolving this executable's path")?;
    let Some(path) = args.config else {
        anyhow::ensure!(!args.validate, "--validate needs --config FILE");
        return run_default(upgrade);
    };
    let loading = || format!("loading {}", path.display());
    let config = load(&path)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(loading)?;
    let xds = Bootstrap::from_config(&config)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(loading)?;
    let quic = quic::prepare(&config)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(loading)?;
    let tls = xds.as_ref().map(Bootstrap::tls_runtime).unwrap_or_default();
    let config = xds.as_ref().map_or(config, Bootstrap::initial_config);
    if args.validate {
        // Builds every part of the config as a run would, and starts nothing: no
        // listener, no thread, no file opened for writing.
        Snapshot::build(config, &registry_with(tls), None).map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("config ok");
        return Ok(());
    }
    // SIGHUP or `POST /reload` reads the file again; so does a server taken back
    // after a roll-back, built like this one: with the xDS admin pages, which follow
    // the xDS client started last (a new one starts with that server).
    let admin = xds.clone();
    let build = move |config: Config| {
        let path = path.clone();
        let server = Server::new(config, registry_with(tls.clone()))?
            .with_config_source(Arc::new(move || load(&path)));
        Ok::<_, proxy_core::ServerError>(match &admin {
            Some(xds) => xds.install(server),
            None => server,
        })
    };
    let server = build(config).map_err(|e| anyhow::anyhow!("{}", DisplayChain(&e)))?;
    // HTTP/3 listeners of the `quic` section, started once the server runs and
    // stopped when it has drained.
    serve(server, upgrade, build, xds, QuicRun::new(quic))
}

fn run_default(upgrade: UpgradeOptions) -> anyhow::Result<()> {
    let upstream = proxy_core::demo::start_upstream("the sidecar's demo upstream")
        .context("starting the demo upstream")?;
    let yaml = DEFAULT_CONFIG.replace("127.0.0.1:1\"", &format!("{upstream}\""));
    let config = Config::from_yaml(&yaml).map_err(|e| anyhow::anyhow!("embedded config: {e}"))?;
    tracing::info!(%upstream, "demo upstream started; try: curl http://127.0.0.1:15001/");
    let server =
        Server::new(config, registry()).map_err(|e| anyhow::anyhow!("{}", DisplayChain(&e)))?;
    serve(
        server,
        upgrade,
        |config| Server::new(config, registry()),
        None,
        QuicRun::new(None),
    )
}

/// Runs `server` until SIGTERM/SIGINT or a hand-off to a new process (proxy-upgrade's
/// `serve`); the xDS client, if any, starts once the server runs (and once a server
/// taken back after a roll-back runs) and stops when it drains.
fn serve(
    server: Server,
    upgrade: UpgradeOptions,
    rebuild: impl Fn(Config) -> Result<Server, proxy_core::ServerError> + Send + Sync + 'static,
    xds: Option<Bootstrap>,
    quic: QuicRun,
) -> anyhow::Result<()> {
    // `quic` lives past the run: dropped once the server drained (the hook's copy
    // is dropped when `serve` returns), it stops the HTTP/3 listeners (or those
    // handed over drain their connections).
    let quic = Arc::new(quic);
    let hook_quic = quic.clone();
    let result = proxy_upgrade::serve(server, upgrade, rebuild, move |running| {
        hook_quic.start(running)?;
        let xds = xds.as_ref().and_then(|xds| {
            xds.spawn(running.server().clone())
                .inspect_err(|e| tracing::error!(error = %e, "cannot start the xDS client"))
                .ok()
        });
        Ok::<_, anyhow::Error>(xds)
    });
    drop(quic);
    result.map_err(|e| anyhow::anyhow!("{}", DisplayChain(&e)))
}
