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
//! ```

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use proxy_core::{config::Config, snapshot::Snapshot, DisplayChain, Registry, Server};

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
    /// Log filter (`RUST_LOG` syntax), e.g. `info` or `proxy_filters=debug`.
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
    let Some(path) = args.config else {
        anyhow::ensure!(!args.validate, "--validate needs --config FILE");
        return run_default();
    };
    let load = move || Config::load(&path);
    let config = load()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("loading the config")?;
    if args.validate {
        // Builds every part of the config as a run would, and starts nothing.
        Snapshot::build(config, &registry(), None).map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("config ok");
        return Ok(());
    }
    let server =
        Server::new(config, registry()).map_err(|e| anyhow::anyhow!("{}", DisplayChain(&e)))?;
    // SIGHUP or `POST /reload` on the admin listener reads the file again.
    serve(server.with_config_source(std::sync::Arc::new(load)))
}

fn run_default() -> anyhow::Result<()> {
    let upstream = proxy_core::demo::start_upstream("the api-gateway's demo upstream")
        .context("starting the demo upstream")?;
    let yaml = DEFAULT_CONFIG.replace("127.0.0.1:1\"", &format!("{upstream}\""));
    let config = Config::from_yaml(&yaml).map_err(|e| anyhow::anyhow!("embedded config: {e}"))?;
    tracing::info!(%upstream, "demo upstream started; try the curl line of the README");
    serve(Server::new(config, registry()).map_err(|e| anyhow::anyhow!("{}", DisplayChain(&e)))?)
}

/// Runs `server` until SIGTERM or SIGINT, then drains.
fn serve(server: Server) -> anyhow::Result<()> {
    let handle = server.clone();
    server
        .run_until(async move { handle.wait_for_signals().await })
        .map_err(|e| anyhow::anyhow!("{}", DisplayChain(&e)))
}
