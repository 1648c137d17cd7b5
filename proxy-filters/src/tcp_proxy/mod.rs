//! The TCP proxy: an L4 terminal network filter. Each connection goes to an endpoint
//! of a cluster (picked by the cluster's balancer, connected with its transport and
//! connect timeout), and bytes are copied both ways until both sides closed, one
//! failed, or the connection was idle for `idle_timeout`.
//!
//! Metrics: `proxy_filters_tcp_proxy_{connections_total,active_connections,
//! connect_failures_total,closed_total,bytes_total}`.
//!
//! ```yaml
//! listeners:
//!   - name: db
//!     address: 0.0.0.0:5432
//!     virtual_hosts: []
//!     network_filters:
//!       - typed: tcp_proxy
//!         config: { cluster: postgres, idle_timeout: 30m, buffer_bytes: 16KiB }
//! ```

mod copy;

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use proxy_core::{
    cluster::{Cluster, Outcome},
    config::ByteSize,
    BoxError, Connection,
};
use serde::{Deserialize, Serialize};
use tower_service::Service;

pub use copy::{bidirectional, Copied};

use crate::{metrics::TcpProxyCounters, ConfigError, TcpProxyError};

/// The registered name.
pub const NAME: &str = "tcp_proxy";

/// The `tcp_proxy` filter's section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpProxyConfig {
    /// Names this filter in metrics (default: the listener's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The cluster connections go to; it must exist in the config.
    pub cluster: String,
    /// Close when no byte moved either way for this long (default 1h).
    #[serde(default = "default_idle", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Endpoints tried before giving up on a connection (default 1).
    #[serde(default = "default_attempts")]
    pub connect_attempts: std::num::NonZeroU8,
    /// Copy buffer per direction (default 16KiB, from 512 to 1MiB).
    #[serde(default = "default_buffer")]
    pub buffer_bytes: ByteSize,
}

impl TcpProxyConfig {
    /// Proxies to `cluster` with every other field at its default.
    pub fn new(cluster: impl Into<String>) -> Self {
        Self {
            name: None,
            cluster: cluster.into(),
            idle_timeout: default_idle(),
            connect_attempts: default_attempts(),
            buffer_bytes: default_buffer(),
        }
    }
}

fn default_idle() -> Duration {
    Duration::from_secs(3600)
}
fn default_attempts() -> std::num::NonZeroU8 {
    std::num::NonZeroU8::MIN
}
fn default_buffer() -> ByteSize {
    ByteSize(16 * 1024)
}

#[derive(Debug)]
struct Settings {
    cluster: Arc<Cluster>,
    idle: Duration,
    attempts: u8,
    buffer: usize,
    counters: Arc<TcpProxyCounters>,
}

/// The TCP proxy as a layer that ignores the service it wraps: it is a terminal.
///
/// # Example
/// An echo server as the upstream cluster, a connection proxied to it:
/// ```
/// use proxy_core::{cluster::Cluster, BoxError, Connection, Stream};
/// use proxy_filters::tcp_proxy::{TcpProxyConfig, TcpProxyLayer};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let cluster = Cluster::builder("echo").endpoint(echo.local_addr()?).build()?;
/// tokio::spawn(async move {
///     let (mut s, _) = echo.accept().await.unwrap();
///     let (mut r, mut w) = s.split();
///     tokio::io::copy(&mut r, &mut w).await.unwrap();
/// });
///
/// let layer = TcpProxyLayer::new(&TcpProxyConfig::new("echo"), cluster, Default::default())?;
/// // A terminal: the service it wraps is never called.
/// let svc = ServiceBuilder::new()
///     .layer(layer)
///     .service(service_fn(|_conn: Connection| async { Ok::<_, BoxError>(()) }));
/// let (mut client, accepted) = tokio::io::duplex(1024);
/// let conn = Connection {
///     stream: Stream::Boxed(Box::new(accepted)),
///     peer: None,
///     listener: "db".into(),
///     secure: false,
///     extensions: Default::default(),
/// };
/// let proxied = tokio::spawn(svc.oneshot(conn));
/// client.write_all(b"ping").await?;
/// let mut echoed = [0; 4];
/// client.read_exact(&mut echoed).await?;
/// assert_eq!(&echoed, b"ping");
/// drop(client);
/// proxied.await??;
/// # Ok::<_, BoxError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct TcpProxyLayer {
    settings: Arc<Settings>,
}

impl TcpProxyLayer {
    /// Proxies to `cluster` (resolved by the caller from `cfg.cluster`: the registry
    /// refuses a missing one), counting in `counters`.
    ///
    /// # Errors
    /// A buffer size out of range or a zero idle timeout, naming the field.
    pub fn new(
        cfg: &TcpProxyConfig,
        cluster: Arc<Cluster>,
        counters: Arc<TcpProxyCounters>,
    ) -> Result<Self, ConfigError> {
        if !(512..=1 << 20).contains(&cfg.buffer_bytes.get()) {
            return Err(ConfigError::invalid(
                "buffer_bytes",
                format!("{} is not from 512 to 1048576", cfg.buffer_bytes),
            ));
        }
        if cfg.idle_timeout.is_zero() {
            return Err(ConfigError::invalid("idle_timeout", "must be above zero"));
        }
        Ok(Self {
            settings: Arc::new(Settings {
                cluster,
                idle: cfg.idle_timeout,
                attempts: cfg.connect_attempts.get(),
                buffer: cfg.buffer_bytes.as_usize(),
                counters,
            }),
        })
    }
}

impl<S> tower_layer::Layer<S> for TcpProxyLayer {
    type Service = TcpProxy;

    fn layer(&self, _inner: S) -> TcpProxy {
        TcpProxy {
            settings: self.settings.clone(),
        }
    }
}

/// Proxies each connection to the cluster (see [`self`]).
#[derive(Debug, Clone)]
pub struct TcpProxy {
    settings: Arc<Settings>,
}

impl Service<Connection> for TcpProxy {
    type Response = ();
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, conn: Connection) -> Self::Future {
        let s = self.settings.clone();
        let span = tracing::debug_span!(
            "tcp_proxy",
            peer = ?conn.peer,
            listener = %conn.listener,
            cluster = %s.cluster.name
        );
        Box::pin(tracing::Instrument::instrument(
            async move {
                s.counters.connections.inc();
                s.counters.active.inc();
                let r = proxy(&s, conn).await;
                s.counters.active.dec();
                match &r {
                    Ok(c) => tracing::debug!(up = c.up, down = c.down, "tcp proxy closed"),
                    Err(TcpProxyError::IdleTimeout) => s.counters.idle_timeouts.inc(),
                    Err(TcpProxyError::Io(e)) => {
                        tracing::debug!(error = %e, "tcp proxy copy failed");
                        s.counters.errors.inc();
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "tcp proxy connect failed");
                        s.counters.connect_failures.inc();
                    }
                }
                Ok(())
            },
            span,
        ))
    }
}

async fn proxy(s: &Settings, mut conn: Connection) -> Result<Copied, TcpProxyError> {
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts
        .extensions
        .insert(proxy_core::proxy::ConnInfo::new(conn.peer, conn.secure));
    let mut last = None;
    let mut upstream = None;
    for _ in 0..s.attempts {
        let Some(endpoint) = s.cluster.pick(&parts) else {
            return Err(TcpProxyError::NoEndpoints {
                cluster: s.cluster.name.clone(),
            });
        };
        let started = tokio::time::Instant::now();
        match endpoint.connect().await {
            Ok(stream) => {
                upstream = Some(stream);
                break;
            }
            Err(source) => {
                // Outlier detection and health checks hear of L4 connect failures too.
                for x in s.cluster.extensions.iter() {
                    x.on_outcome(&endpoint, &Outcome::ConnectFailure, started.elapsed());
                }
                last = Some(TcpProxyError::Connect {
                    addr: endpoint.address,
                    source,
                })
            }
        }
    }
    let Some(mut upstream) = upstream else {
        return Err(last.unwrap_or(TcpProxyError::NoEndpoints {
            cluster: s.cluster.name.clone(),
        }));
    };
    copy::bidirectional(
        &mut conn.stream,
        &mut upstream,
        s.idle,
        s.buffer,
        (&s.counters.bytes_up, &s.counters.bytes_down),
    )
    .await
}
