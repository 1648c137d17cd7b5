//! Connection-level fault injection, as a network filter: hold a share of new
//! connections for a delay, reset a share (TCP RST, via a zero linger) before any
//! byte is served.
//!
//! Shares are `delay.delay_percent` and `reset.reset_percent` (0-100, default 100).
//! Metrics: `proxy_filters_connection_fault_{connections_total,injected_total}`.
//!
//! ```yaml
//! network_filters:
//!   - typed: connection_fault
//!     config: { delay: { duration: 200ms, delay_percent: 10 }, reset: { reset_percent: 1 } }
//! ```

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use proxy_core::{BoxError, Connection, Stream};
use serde::{Deserialize, Serialize};
use tower::ServiceExt;
use tower_service::Service;

use crate::{
    config::{Percent, Sampler},
    metrics::ConnFaultCounters,
    ConfigError,
};

/// The registered name.
pub const NAME: &str = "connection_fault";

/// The `connection_fault` filter's section: `delay`, `reset` or both.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnFaultConfig {
    /// Names this filter in metrics (default: the listener's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Hold new connections before serving them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<ConnDelay>,
    /// Reset new connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<ConnReset>,
    /// Seeds the sampler (tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// A connection delay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnDelay {
    /// How long.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Share of connections delayed, 0-100 (default 100).
    #[serde(default)]
    pub delay_percent: Percent,
}

/// A connection reset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnReset {
    /// Share of connections reset, 0-100 (default 100).
    #[serde(default)]
    pub reset_percent: Percent,
}

#[derive(Debug)]
struct Settings {
    delay: Option<(Duration, u32)>,
    reset: Option<u32>,
    sampler: Sampler,
    counters: Arc<ConnFaultCounters>,
}

/// Applies [`ConnFault`] to a connection service.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use proxy_core::{config::Percent, BoxError, Connection, Stream};
/// use proxy_filters::conn_fault::{ConnDelay, ConnFaultConfig, ConnFaultLayer};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let cfg = ConnFaultConfig {
///     delay: Some(ConnDelay { duration: Duration::from_millis(20), delay_percent: Percent::HUNDRED }),
///     ..Default::default()
/// };
/// let svc = ServiceBuilder::new()
///     .layer(ConnFaultLayer::try_from(&cfg)?)
///     .service(service_fn(|_conn: Connection| async { Ok::<_, BoxError>(()) }));
/// let conn = Connection {
///     stream: Stream::Boxed(Box::new(tokio::io::duplex(64).0)),
///     peer: None,
///     listener: "edge".into(),
///     secure: false,
///     extensions: Default::default(),
/// };
/// let started = std::time::Instant::now();
/// svc.oneshot(conn).await?;
/// assert!(started.elapsed() >= Duration::from_millis(20), "held before it is served");
/// # Ok::<_, BoxError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ConnFaultLayer {
    settings: Arc<Settings>,
}

impl ConnFaultLayer {
    /// Validates `cfg`.
    ///
    /// # Errors
    /// Nothing to inject.
    pub fn new(
        cfg: &ConnFaultConfig,
        counters: Arc<ConnFaultCounters>,
    ) -> Result<Self, ConfigError> {
        if cfg.delay.is_none() && cfg.reset.is_none() {
            return Err(ConfigError::invalid("delay", "set delay, reset or both"));
        }
        Ok(Self {
            settings: Arc::new(Settings {
                delay: cfg
                    .delay
                    .as_ref()
                    .map(|d| (d.duration, d.delay_percent.per_million())),
                reset: cfg.reset.as_ref().map(|r| r.reset_percent.per_million()),
                sampler: Sampler::new(cfg.seed),
                counters,
            }),
        })
    }
}

impl TryFrom<&ConnFaultConfig> for ConnFaultLayer {
    type Error = ConfigError;

    /// [`ConnFaultLayer::new`] with counters of its own.
    fn try_from(cfg: &ConnFaultConfig) -> Result<Self, ConfigError> {
        Self::new(cfg, Arc::default())
    }
}

impl<S> tower_layer::Layer<S> for ConnFaultLayer {
    type Service = ConnFault<S>;

    fn layer(&self, inner: S) -> ConnFault<S> {
        ConnFault {
            inner,
            settings: self.settings.clone(),
        }
    }
}

/// Delays or resets a share of connections (see [`self`]).
#[derive(Debug, Clone)]
pub struct ConnFault<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S> Service<Connection> for ConnFault<S>
where
    S: Service<Connection, Response = (), Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, conn: Connection) -> Self::Future {
        let s = &*self.settings;
        s.counters.connections.inc();
        let delay = s.delay.and_then(|(d, p)| s.sampler.hit(p).then_some(d));
        let reset = s.reset.is_some_and(|p| s.sampler.hit(p));
        if delay.is_none() && !reset {
            return Box::pin(self.inner.call(conn));
        }
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let counters = s.counters.clone();
        Box::pin(async move {
            if let Some(d) = delay {
                counters.delays.inc();
                tokio::time::sleep(d).await;
            }
            if reset {
                counters.resets.inc();
                reset_now(conn);
                return Ok(());
            }
            inner.oneshot(conn).await
        })
    }
}

/// Closes with a TCP RST where the stream is TCP; other streams just close.
fn reset_now(conn: Connection) {
    if let Stream::Tcp(s) = &conn.stream {
        let _ = s.set_zero_linger();
    }
    drop(conn);
}
