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

use std::{path::PathBuf, sync::Arc};

use anyhow::Context as _;
use clap::Parser;
use proxy_core::{config::Config, ConfigError, DisplayChain, Registry, Server};

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

fn load(path: &PathBuf) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(path.display().to_string(), format!("cannot read: {e}")))?;
    Config::from_yaml(&text)
}

/// Every capability the sidecar offers, by config name.
fn registry() -> Registry {
    Registry::default()
}

fn run(args: Args) -> anyhow::Result<()> {
    let Some(path) = args.config else {
        anyhow::ensure!(!args.validate, "--validate needs --config FILE");
        return run_default();
    };
    let config = load(&path)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("loading {}", path.display()))?;
    let server =
        Server::new(config, registry()).map_err(|e| anyhow::anyhow!("{}", DisplayChain(&e)))?;
    if args.validate {
        println!("config ok");
        return Ok(());
    }
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
