//! # sidecar
//!
//! A service-mesh sidecar assembled from the proxy crates: listeners, routes and
//! clusters from a YAML file, live reload (SIGHUP or `POST /reload` on the admin
//! port), graceful drain on SIGTERM.
//!
//! ```text
//! cargo run --release -p sidecar                 # embedded default, demo upstream
//! curl http://127.0.0.1:15001/                   # through the sidecar
//! curl http://127.0.0.1:15000/stats/prometheus   # admin
//! sidecar --config sidecar.yaml [--validate]
//! ```

mod demo_upstream;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context as _;
use clap::Parser;
use proxy_core::{config::Config, snapshot::Snapshot, ConfigError, DisplayChain, Registry, Server};

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
    /// Log filter (`RUST_LOG` syntax), e.g. `info` or `proxy_core=debug`.
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
fn load(path: &Path) -> Result<Config, ConfigError> {
    Config::load(path)
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
    let mut registry = Registry::default();
    proxy_lb::register(&mut registry);
    proxy_tls::register(&mut registry);
    proxy_codec::register(&mut registry);
    proxy_filters::register(&mut registry);
    registry
}

fn run(args: Args) -> anyhow::Result<()> {
    let Some(path) = args.config else {
        anyhow::ensure!(!args.validate, "--validate needs --config FILE");
        return run_default();
    };
    let config = load(&path)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("loading {}", path.display()))?;
    if args.validate {
        // Builds every part of the config as a run would, and starts nothing: no
        // listener, no thread, no file opened for writing.
        Snapshot::build(config, &registry(), None).map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("config ok");
        return Ok(());
    }
    let server =
        Server::new(config, registry()).map_err(|e| anyhow::anyhow!("{}", DisplayChain(&e)))?;
    let source_path = path.clone();
    let server = server.with_config_source(Arc::new(move || load(&source_path)));
    server
        .run()
        .map_err(|e| anyhow::anyhow!("{}", DisplayChain(&e)))
}

fn run_default() -> anyhow::Result<()> {
    let upstream = demo_upstream::start().context("starting the demo upstream")?;
    let yaml = DEFAULT_CONFIG.replace("127.0.0.1:1\"", &format!("{upstream}\""));
    let config = Config::from_yaml(&yaml).map_err(|e| anyhow::anyhow!("embedded config: {e}"))?;
    tracing::info!(%upstream, "demo upstream started; try: curl http://127.0.0.1:15001/");
    let server =
        Server::new(config, registry()).map_err(|e| anyhow::anyhow!("{}", DisplayChain(&e)))?;
    server
        .run()
        .map_err(|e| anyhow::anyhow!("{}", DisplayChain(&e)))
}
