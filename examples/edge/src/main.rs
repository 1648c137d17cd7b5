//! # edge
//!
//! An edge (access-layer) gateway assembled from the proxy crates: TLS termination with
//! international (ECDSA) and Guomi (SM2, RFC 8998) certificates side by side, private
//! keys on offload engines; HTTP/1.1 and HTTP/2 over TLS and HTTP/3 over QUIC on one
//! port, advertised with `Alt-Svc`; LDC zone routing (uid shard, zone cookie,
//! failover) with Maglev inside a zone; attack defence as the default posture
//! (per-source connection limits, header and slowloris timeouts, request head limits,
//! fixed and adaptive rate limits, an RBAC deny list); an access log and Prometheus
//! metrics on the admin port.
//!
//! ```text
//! cargo run --release -p edge                          # embedded default, demo backends
//! curl -k https://127.0.0.1:8443/hello -H 'x-uid: 7'   # zone z1 answers (uid 7 -> z1)
//! curl http://127.0.0.1:9901/stats/prometheus          # admin
//! edge --config edge.yaml [--validate]
//! edge --config edge.yaml --upgrade-socket /run/edge.sock   # serves hot upgrades
//! kill -USR2 $PID                                       # the new binary takes over
//! ```
//!
//! A config file with an `xds` section adds listeners, routes, clusters, endpoints
//! and secrets from that control plane (proxy-xds's `Bootstrap`).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context as _;
use clap::Parser;
use proxy_core::{config::Config, snapshot::Snapshot, ConfigError, DisplayChain, Registry, Server};
use proxy_quic::section::{self as quic, QuicRun};
use proxy_tls::{self_signed, TlsRuntime};
use proxy_upgrade::UpgradeArgs;
use proxy_xds::Bootstrap;

const DEFAULT_CONFIG: &str = include_str!("../default.yaml");

/// An edge gateway built from the proxy crates.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The YAML config; without it the embedded default runs, with throwaway
    /// certificates and demo backends in two zones.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Check the config and exit.
    #[arg(long, requires = "config")]
    validate: bool,
    /// Embedded default only: the public address, TCP (HTTP/1.1, HTTP/2 over TLS)
    /// and UDP (HTTP/3).
    #[arg(long, default_value = "127.0.0.1:8443", conflicts_with = "config")]
    listen: SocketAddr,
    /// Embedded default only: the admin address.
    #[arg(long, default_value = "127.0.0.1:9901", conflicts_with = "config")]
    admin: SocketAddr,
    /// Embedded default only: where the throwaway certificates are written (`edge.pem`,
    /// `edge-sm2.pem`, their keys and `*-ca.pem` for clients); default: a fresh
    /// directory in the temp dir, removed at exit.
    #[arg(long, value_name = "DIR", conflicts_with = "config")]
    certs: Option<PathBuf>,
    /// Hot upgrade: `--upgrade-socket PATH` (SIGUSR2 starts the new binary),
    /// `--upgrade`, `--upgrade-window DURATION`. HTTP/3 listeners go over too.
    #[command(flatten)]
    upgrade: UpgradeArgs,
    /// Log filter (`RUST_LOG` syntax), e.g. `info` or `proxy_lb=debug` (`trace` events
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

/// Every capability the edge offers, by config name: proxy-lb (balancers incl.
/// `maglev` and `zone_aware`, filter `zone_routing`), proxy-tls (`tls`, Guomi,
/// offload; `secret:` resolved in `tls`'s store, an xDS client's SDS), proxy-codec,
/// proxy-filters (`connection_limit`, `rbac`, `local_rate_limit`,
/// `adaptive_concurrency`, `access_log`, ...).
fn registry(tls: TlsRuntime) -> Registry {
    let mut registry = Registry::default();
    proxy_lb::register(&mut registry);
    proxy_tls::register_with(&mut registry, tls);
    proxy_codec::register(&mut registry);
    proxy_filters::register(&mut registry);
    registry
}

/// Reads the config file; the `quic` section's `alt-svc` headers are added to the
/// routes of the TCP listeners its HTTP/3 listeners serve (start and reload).
fn load(path: &Path) -> Result<Config, ConfigError> {
    Config::load(path).and_then(quic::advertise)
}

fn run(args: Args) -> anyhow::Result<()> {
    let upgrade = args
        .upgrade
        .clone()
        .into_options()
        .context("resolving this executable's path")?;
    let (config, certs) = match &args.config {
        Some(path) => {
            let config = load(path)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("loading {}", path.display()))?;
            (config, None)
        }
        None => {
            let (config, certs) = default_config(&args)?;
            (config, Some(certs))
        }
    };
    let xds = Bootstrap::from_config(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let quic = quic::prepare(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let tls = xds.as_ref().map(Bootstrap::tls_runtime).unwrap_or_default();
    let config = xds.as_ref().map_or(config, Bootstrap::initial_config);
    if args.validate {
        // Builds every part as a run would, and starts nothing.
        Snapshot::build(config, &registry(tls), None).map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("config ok");
        return Ok(());
    }
    // A server taken back after a failed upgrade is built the same way, with the
    // xDS admin pages (they follow the xDS client started last).
    let (path, admin) = (args.config, xds.clone());
    let build = move |config| {
        let mut server = Server::new(config, registry(tls.clone()))?;
        if let Some(path) = path.clone() {
            server = server.with_config_source(Arc::new(move || load(&path)));
        }
        Ok::<_, proxy_core::ServerError>(match &admin {
            Some(xds) => xds.install(server),
            None => server,
        })
    };
    let server = build(config).map_err(|e| anyhow::anyhow!("{}", DisplayChain(&e)))?;
    // HTTP/3 on a thread of its own, handed over in hot upgrades; it drains once the
    // server drained (when `quic` drops).
    // The hook runs again for a server taken back after a roll-back (a new xDS
    // client); its copy of `quic` is dropped when `serve` returns.
    let quic = Arc::new(QuicRun::new(quic));
    let hook_quic = quic.clone();
    let result = proxy_upgrade::serve(server, upgrade, build, move |running| {
        hook_quic.start(running)?;
        let xds = xds.as_ref().and_then(|xds| {
            xds.spawn(running.server().clone())
                .inspect_err(|e| tracing::error!(error = %e, "cannot start the xDS client"))
                .ok()
        });
        Ok::<_, anyhow::Error>(xds)
    });
    drop(quic);
    if let Some(CertsDir { path, remove: true }) = certs {
        let _ = std::fs::remove_dir_all(path);
    }
    result.map_err(|e| anyhow::anyhow!("{}", DisplayChain(&e)))
}

/// Where the default run's throwaway certificates are, and whether to remove them.
struct CertsDir {
    path: PathBuf,
    remove: bool,
}

/// The embedded default with its addresses, throwaway certificates and demo backends
/// (two in zone z1, two in z2) filled in.
fn default_config(args: &Args) -> anyhow::Result<(Config, CertsDir)> {
    let certs = match &args.certs {
        Some(path) => CertsDir {
            path: path.clone(),
            remove: false,
        },
        None => CertsDir {
            path: std::env::temp_dir().join(format!("edge-certs-{}", std::process::id())),
            remove: true,
        },
    };
    let dir = &certs.path;
    let names = ["localhost", "127.0.0.1", "edge.test"];
    self_signed::international(&names)?
        .write(dir, "edge")
        .with_context(|| format!("writing certificates to {}", dir.display()))?;
    self_signed::guomi(&["localhost", "edge.test"])?
        .write(dir, "edge-sm2")
        .with_context(|| format!("writing certificates to {}", dir.display()))?;
    // proxy-core's demo upstream, one per backend, each answering with its name.
    let backends = [
        "zone z1 backend a",
        "zone z1 backend b",
        "zone z2 backend a",
        "zone z2 backend b",
    ]
    .map(proxy_core::demo::start_upstream)
    .into_iter()
    .collect::<Result<Vec<_>, _>>()
    .context("starting demo backends")?;
    let mut yaml = DEFAULT_CONFIG
        .replace("@LISTEN@", &args.listen.to_string())
        .replace("@ADMIN@", &args.admin.to_string())
        .replace("@CERTS@", &dir.display().to_string());
    for (mark, addr) in ["@Z1A@", "@Z1B@", "@Z2A@", "@Z2B@"].iter().zip(&backends) {
        yaml = yaml.replace(mark, &addr.to_string());
    }
    let config = Config::from_yaml(&yaml)
        .and_then(quic::advertise)
        .map_err(|e| anyhow::anyhow!("embedded config: {e}"))?;
    tracing::info!(
        certs = %dir.display(),
        ?backends,
        "demo backends in zones z1 and z2; try: curl -k https://{}/hello -H 'x-uid: 7'",
        args.listen
    );
    Ok((config, certs))
}
