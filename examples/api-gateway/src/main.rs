//! # api-gateway
//!
//! An API gateway assembled from the proxy crates, the same proxy beside each
//! application: JWT and API-key authentication (proxy-filters `jwt_auth`,
//! `api_key_auth`), claims to headers, per-consumer rate limits (`local_rate_limit`
//! keyed by the consumer header), RBAC on consumer, path and method (`rbac`), Lua
//! scripts (`lua`), HTTP/JSON to Bolt and Dubbo generic calls (proxy-codec
//! `json_to_rpc`), the access log and Prometheus metrics on the admin listener.
//! This file only assembles: every capability is a crate's layer, named in the config.
//!
//! ```text
//! cargo run --release -p api-gateway               # embedded default, demo upstream
//! curl -H "authorization: Bearer $TOKEN" http://127.0.0.1:18080/api/echo   # README's token
//! curl http://127.0.0.1:18001/stats/prometheus     # admin
//! api-gateway --config gateway.yaml [--validate]
//! api-gateway --config gateway.yaml --upgrade-socket /run/gw.sock   # serves upgrades
//! kill -USR2 $PID                                 # starts the new binary, which takes over
//! ```
//!
//! A config file with an `xds` section adds listeners, routes, clusters and
//! endpoints from that control plane (proxy-xds's `Bootstrap`).

use std::{path::PathBuf, sync::Arc};

use anyhow::Context as _;
use clap::Parser;
use proxy_core::{config::Config, snapshot::Snapshot, DisplayChain, Registry, Server, ServerError};
use proxy_upgrade::{UpgradeArgs, UpgradeOptions};
use proxy_xds::Bootstrap;

const DEFAULT_CONFIG: &str = include_str!("../default.yaml");

/// An API gateway built from the proxy crates.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The YAML config; without it the embedded default runs with a demo upstream.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Check the config and exit (starts nothing).
    #[arg(long)]
    validate: bool,
    /// Hot upgrade: `--upgrade-socket PATH` (SIGUSR2 starts the new binary),
    /// `--upgrade`, `--upgrade-window DURATION`.
    #[command(flatten)]
    upgrade: UpgradeArgs,
    /// Log filter (`RUST_LOG` syntax), e.g. `info` or `proxy_filters=debug` (`trace` events
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

/// Every capability the gateway offers, by config name.
///
/// - proxy-filters: HTTP filters jwt_auth, api_key_auth, rbac, local_rate_limit,
///   adaptive_concurrency, lua, header_rewrite, fault, mirror, access_log; network
///   filters connection_limit, connection_fault, tcp_proxy.
/// - proxy-codec: the HTTP filter json_to_rpc; protocols `bolt` and `dubbo` on
///   listeners and clusters.
/// - proxy-lb: balancers (`lb`), outlier detection and health checks on clusters.
fn registry() -> Registry {
    let mut registry = Registry::default();
    proxy_lb::register(&mut registry);
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
    let config = Config::load(&path)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("loading the config")?;
    let xds = Bootstrap::from_config(&config)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("loading the config")?;
    let config = xds.as_ref().map_or(config, Bootstrap::initial_config);
    if args.validate {
        // Builds every part of the config as a run would, and starts nothing.
        Snapshot::build(config, &registry(), None).map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("config ok");
        return Ok(());
    }
    // SIGHUP or `POST /reload` on the admin listener reads the file again; so does a
    // server taken back after a failed upgrade, built the same way: with the xDS
    // admin pages, which follow the xDS client started last.
    let admin = xds.clone();
    let build = move |config| {
        let path = path.clone();
        let server = Server::new(config, registry())?
            .with_config_source(Arc::new(move || Config::load(&path)));
        Ok::<_, ServerError>(match &admin {
            Some(xds) => xds.install(server),
            None => server,
        })
    };
    let server = build(config).map_err(|e| anyhow::anyhow!("{}", DisplayChain(&e)))?;
    serve(server, upgrade, build, xds)
}

fn run_default(upgrade: UpgradeOptions) -> anyhow::Result<()> {
    let upstream = proxy_core::demo::start_upstream("the api-gateway's demo upstream")
        .context("starting the demo upstream")?;
    let yaml = DEFAULT_CONFIG.replace("127.0.0.1:1\"", &format!("{upstream}\""));
    let config = Config::from_yaml(&yaml).map_err(|e| anyhow::anyhow!("embedded config: {e}"))?;
    tracing::info!(%upstream, "demo upstream started; try the curl line of the README");
    let server =
        Server::new(config, registry()).map_err(|e| anyhow::anyhow!("{}", DisplayChain(&e)))?;
    serve(
        server,
        upgrade,
        |config| Server::new(config, registry()),
        None,
    )
}

/// Runs `server` until SIGTERM or SIGINT, or a hand-off to a new process
/// (proxy-upgrade's `serve`), then drains; the xDS client, if any, runs meanwhile
/// (a new one for a server taken back after a roll-back).
fn serve(
    server: Server,
    upgrade: UpgradeOptions,
    rebuild: impl Fn(Config) -> Result<Server, ServerError> + Send + Sync + 'static,
    xds: Option<Bootstrap>,
) -> anyhow::Result<()> {
    proxy_upgrade::serve(server, upgrade, rebuild, move |running| {
        let xds = xds.as_ref().and_then(|xds| {
            xds.spawn(running.server().clone())
                .inspect_err(|e| tracing::error!(error = %e, "cannot start the xDS client"))
                .ok()
        });
        Ok::<_, std::convert::Infallible>(xds)
    })
    .map_err(|e| anyhow::anyhow!("{}", DisplayChain(&e)))
}
