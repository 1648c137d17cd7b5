//! Connection limits per listener and per source IP, as a network filter. A refused
//! connection is closed at once, before any byte is read.
//!
//! The listener count is one atomic; the per-IP counts live in a map split into 64
//! shards, each behind its own short lock, so accepts from different peers rarely
//! meet. An entry lives while its IP has connections open, so the map is bounded by
//! the open connections. The counts survive reloads ([`ConnCounts`]).
//!
//! Metrics: `proxy_filters_connection_limit_{accepted_total,refused_total,active}`.
//!
//! ```yaml
//! network_filters:
//!   - typed: connection_limit
//!     config: { max_connections: 10000, max_per_source_ip: 100 }
//! ```

use std::{
    collections::HashMap,
    future::Future,
    hash::BuildHasher,
    net::IpAddr,
    num::NonZeroU32,
    pin::Pin,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
};

use proxy_core::{BoxError, Connection};
use serde::{Deserialize, Serialize};
use tower_service::Service;

use crate::{metrics::ConnLimitCounters, ConfigError};

/// The registered name.
pub const NAME: &str = "connection_limit";

/// The `connection_limit` filter's section. Set either limit or both; an absent
/// limit is no limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnLimitConfig {
    /// Names this filter in metrics (default: the listener's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Connections open at once through this filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<NonZeroU32>,
    /// Connections open at once from one source IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_source_ip: Option<NonZeroU32>,
}

const SHARDS: usize = 64;

/// The connections open through a connection limit, in all and by source IP. One
/// is kept per listener and filter across reloads (see [`crate::register`]), so a
/// new config counts the connections the old one admitted.
#[derive(Debug)]
pub struct ConnCounts {
    total: AtomicU32,
    shards: Box<[Mutex<HashMap<IpAddr, u32>>]>,
    hasher: std::hash::RandomState,
}

impl Default for ConnCounts {
    fn default() -> Self {
        Self {
            total: AtomicU32::new(0),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: std::hash::RandomState::new(),
        }
    }
}

/// Renders nothing: the counts are state; `proxy_filters_connection_limit_*` come from the
/// filter's counters.
impl proxy_core::metrics::RenderMetrics for ConnCounts {
    fn render(&self, _out: &mut String) {}
}

impl ConnCounts {
    fn shard(&self, ip: IpAddr) -> &Mutex<HashMap<IpAddr, u32>> {
        &self.shards[(self.hasher.hash_one(ip) as usize) % SHARDS]
    }

    /// Connections open now.
    pub fn open(&self) -> u32 {
        self.total.load(Ordering::Acquire)
    }

    /// Connections open now from `ip`.
    pub fn open_from(&self, ip: IpAddr) -> u32 {
        self.shard(ip)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ip)
            .copied()
            .unwrap_or(0)
    }
}

#[derive(Debug)]
struct State {
    max_total: u32,
    max_per_ip: u32,
    counts: Arc<ConnCounts>,
    counters: Arc<ConnLimitCounters>,
}

/// An admitted connection's place, given back on drop.
#[derive(Debug)]
struct Permit {
    counts: Arc<ConnCounts>,
    counters: Arc<ConnLimitCounters>,
    ip: Option<IpAddr>,
}

impl State {
    fn admit(&self, peer: Option<IpAddr>) -> Option<Permit> {
        let counts = &self.counts;
        let prev = counts.total.fetch_add(1, Ordering::AcqRel);
        if prev >= self.max_total {
            counts.total.fetch_sub(1, Ordering::AcqRel);
            self.counters.refused_total.inc();
            return None;
        }
        if let Some(ip) = peer {
            let mut map = counts.shard(ip).lock().unwrap_or_else(|e| e.into_inner());
            let n = map.entry(ip).or_insert(0);
            if *n >= self.max_per_ip {
                if *n == 0 {
                    map.remove(&ip);
                }
                drop(map);
                counts.total.fetch_sub(1, Ordering::AcqRel);
                self.counters.refused_source.inc();
                return None;
            }
            *n += 1;
        }
        self.counters.accepted.inc();
        self.counters.active.inc();
        Some(Permit {
            counts: counts.clone(),
            counters: self.counters.clone(),
            ip: peer,
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let c = &self.counts;
        if let Some(ip) = self.ip {
            let mut map = c.shard(ip).lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = map.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
        c.total.fetch_sub(1, Ordering::AcqRel);
        self.counters.active.dec();
    }
}

/// Applies [`ConnLimit`] to a connection service.
///
/// # Example
/// ```
/// use std::{num::NonZeroU32, sync::{atomic::{AtomicUsize, Ordering}, Arc}};
/// use proxy_core::{BoxError, Connection, Stream};
/// use proxy_filters::conn_limit::{ConnLimitConfig, ConnLimitLayer};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let cfg = ConnLimitConfig {
///     max_connections: NonZeroU32::new(10_000),
///     max_per_source_ip: NonZeroU32::new(100),
///     ..Default::default()
/// };
/// let layer = ConnLimitLayer::try_from(&cfg)?;
/// let served = Arc::new(AtomicUsize::new(0));
/// let seen = served.clone();
/// let svc = ServiceBuilder::new()
///     .layer(layer.clone())
///     .service(service_fn(move |_conn: Connection| {
///         seen.fetch_add(1, Ordering::SeqCst);
///         async { Ok::<_, BoxError>(()) }
///     }));
/// let conn = Connection {
///     stream: Stream::Boxed(Box::new(tokio::io::duplex(64).0)),
///     peer: Some("10.0.0.1:40000".parse()?),
///     listener: "edge".into(),
///     secure: false,
///     extensions: Default::default(),
/// };
/// svc.oneshot(conn).await?;
/// assert_eq!(served.load(Ordering::SeqCst), 1);
/// assert_eq!(layer.open(), 0, "given back when the connection ends");
/// # Ok::<_, BoxError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ConnLimitLayer {
    state: Arc<State>,
}

impl ConnLimitLayer {
    /// Validates `cfg`; counts start at zero.
    ///
    /// # Errors
    /// Neither limit set.
    pub fn new(
        cfg: &ConnLimitConfig,
        counters: Arc<ConnLimitCounters>,
    ) -> Result<Self, ConfigError> {
        Self::with_counts(cfg, Arc::default(), counters)
    }

    /// Validates `cfg`, counting in `counts` (kept from an earlier config).
    ///
    /// # Errors
    /// Neither limit set.
    pub fn with_counts(
        cfg: &ConnLimitConfig,
        counts: Arc<ConnCounts>,
        counters: Arc<ConnLimitCounters>,
    ) -> Result<Self, ConfigError> {
        if cfg.max_connections.is_none() && cfg.max_per_source_ip.is_none() {
            return Err(ConfigError::invalid(
                "max_connections",
                "set max_connections, max_per_source_ip or both",
            ));
        }
        Ok(Self {
            state: Arc::new(State {
                max_total: cfg.max_connections.map_or(u32::MAX, NonZeroU32::get),
                max_per_ip: cfg.max_per_source_ip.map_or(u32::MAX, NonZeroU32::get),
                counts,
                counters,
            }),
        })
    }

    /// Connections open through this layer now.
    pub fn open(&self) -> u32 {
        self.state.counts.open()
    }
}

impl TryFrom<&ConnLimitConfig> for ConnLimitLayer {
    type Error = ConfigError;

    /// [`ConnLimitLayer::new`] with counters of its own.
    fn try_from(cfg: &ConnLimitConfig) -> Result<Self, ConfigError> {
        Self::new(cfg, Arc::default())
    }
}

impl<S> tower_layer::Layer<S> for ConnLimitLayer {
    type Service = ConnLimit<S>;

    fn layer(&self, inner: S) -> ConnLimit<S> {
        ConnLimit {
            inner,
            state: self.state.clone(),
        }
    }
}

/// Refuses connections past the limits (see [`self`]).
#[derive(Debug, Clone)]
pub struct ConnLimit<S> {
    inner: S,
    state: Arc<State>,
}

impl<S> Service<Connection> for ConnLimit<S>
where
    S: Service<Connection, Response = (), Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, conn: Connection) -> Self::Future {
        match self.state.admit(conn.peer.map(|p| p.ip())) {
            Some(permit) => {
                let fut = self.inner.call(conn);
                Box::pin(async move {
                    let r = fut.await;
                    drop(permit);
                    r
                })
            }
            None => {
                tracing::debug!(peer = ?conn.peer, "connection refused by limit");
                drop(conn);
                Box::pin(std::future::ready(Ok(())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_count_and_release() {
        let cfg: ConnLimitConfig =
            proxy_core::config::from_yaml("{max_connections: 3, max_per_source_ip: 2}").unwrap();
        let layer = ConnLimitLayer::new(&cfg, Default::default()).unwrap();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let p1 = layer.state.admit(Some(a)).unwrap();
        let p2 = layer.state.admit(Some(a)).unwrap();
        assert!(layer.state.admit(Some(a)).is_none(), "per-IP limit");
        let p3 = layer.state.admit(Some(b)).unwrap();
        assert!(layer.state.admit(Some(b)).is_none(), "listener limit");
        drop(p1);
        let p4 = layer.state.admit(Some(a)).unwrap();
        drop((p2, p3, p4));
        assert_eq!(layer.open(), 0);
        assert!(layer
            .state
            .counts
            .shards
            .iter()
            .all(|s| s.lock().unwrap().is_empty()));
    }

    #[test]
    fn counts_carry_over_a_reload() {
        let counts = Arc::new(ConnCounts::default());
        let old: ConnLimitConfig = proxy_core::config::from_yaml("{max_connections: 10}").unwrap();
        let old = ConnLimitLayer::with_counts(&old, counts.clone(), Default::default()).unwrap();
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let held = [
            old.state.admit(Some(ip)).unwrap(),
            old.state.admit(Some(ip)).unwrap(),
        ];
        let new: ConnLimitConfig =
            proxy_core::config::from_yaml("{max_connections: 10, max_per_source_ip: 2}").unwrap();
        let new = ConnLimitLayer::with_counts(&new, counts.clone(), Default::default()).unwrap();
        assert!(
            new.state.admit(Some(ip)).is_none(),
            "the old connections count"
        );
        assert_eq!(counts.open_from(ip), 2);
        drop(held);
        assert!(new.state.admit(Some(ip)).is_some());
        assert_eq!(counts.open(), 0);
    }
}
