//! One upstream endpoint: its address, weight, labels, health and connections.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    num::NonZeroU32,
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc,
    },
};

use crate::{config::ClusterConfig, metrics::RequestStats, upstream::Upstream, ProxyError, Stream};

/// Why an endpoint is kept out of rotation: a set of flags, each owned by the
/// mechanism that sets it (active health checking, outlier detection, a healing
/// centre). An endpoint with no flag set is healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HealthFlags(u8);

impl HealthFlags {
    /// No flag: the endpoint may receive traffic.
    pub const NONE: Self = Self(0);
    /// Active health checking found it failing.
    pub const ACTIVE_HC_FAILED: Self = Self(1);
    /// Outlier detection ejected it.
    pub const EJECTED: Self = Self(1 << 1);
    /// Removed for good (a healing centre asked for it).
    pub const REMOVED: Self = Self(1 << 2);

    /// Whether every flag of `other` is set in `self`.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The raw bits.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// The names of the flags set, for admin pages.
    pub fn names(self) -> Vec<&'static str> {
        [
            (Self::ACTIVE_HC_FAILED, "active_hc_failed"),
            (Self::EJECTED, "ejected"),
            (Self::REMOVED, "removed"),
        ]
        .into_iter()
        .filter(|(f, _)| self.contains(*f))
        .map(|(_, n)| n)
        .collect()
    }
}

impl std::ops::BitOr for HealthFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// One upstream endpoint of a cluster.
#[derive(Debug)]
pub struct Endpoint {
    /// The endpoint address.
    pub address: SocketAddr,
    /// Relative weight for balancers that use one.
    pub weight: NonZeroU32,
    /// Labels from the config (`zone`, `group`, ...).
    pub metadata: Arc<BTreeMap<String, String>>,
    /// Request stats of this endpoint.
    pub stats: RequestStats,
    health: AtomicU8,
    pub(crate) upstream: Upstream,
}

impl Endpoint {
    /// An endpoint with plain HTTP/1.1 defaults, not attached to any cluster: for
    /// balancer tests and benches, and for users assembling their own clusters.
    ///
    /// # Example
    /// ```
    /// use proxy_core::Endpoint;
    /// let e = Endpoint::new("127.0.0.1:8080".parse().unwrap(), 2.try_into().unwrap(), Default::default());
    /// assert!(e.is_healthy());
    /// assert_eq!(e.label("zone"), None);
    /// ```
    pub fn new(
        address: SocketAddr,
        weight: NonZeroU32,
        metadata: BTreeMap<String, String>,
    ) -> Self {
        let cfg = ClusterConfig {
            name: String::new(),
            protocol: Default::default(),
            endpoints: Vec::new(),
            connect_timeout: std::time::Duration::from_secs(2),
            stream_idle_timeout: std::time::Duration::from_secs(60),
            pool: Default::default(),
            lb: crate::config::TypedConfig::named("round_robin"),
            retry_budget: Default::default(),
            circuit_breakers: Default::default(),
            protocol_options: crate::config::Section::empty(),
            transport: None,
            extensions: Vec::new(),
        };
        Self::with_upstream(
            address,
            weight,
            Arc::new(metadata),
            Upstream::new(address, &cfg, None, None, 1),
        )
    }

    pub(crate) fn with_upstream(
        address: SocketAddr,
        weight: NonZeroU32,
        metadata: Arc<BTreeMap<String, String>>,
        upstream: Upstream,
    ) -> Self {
        Self {
            address,
            weight,
            metadata,
            // Least-request balancing reads the in-flight count on every pick.
            stats: RequestStats::with_shared_gauge(),
            health: AtomicU8::new(0),
            upstream,
        }
    }

    /// Whether the endpoint may receive traffic: no health flag is set.
    pub fn is_healthy(&self) -> bool {
        self.health.load(Ordering::Relaxed) == 0
    }

    /// The health flags set now.
    pub fn health_flags(&self) -> HealthFlags {
        HealthFlags(self.health.load(Ordering::Relaxed))
    }

    /// Sets `flag`; returns whether it was newly set.
    pub fn set_health_flag(&self, flag: HealthFlags) -> bool {
        self.health.fetch_or(flag.0, Ordering::AcqRel) & flag.0 != flag.0
    }

    /// Clears `flag`; returns whether it was set.
    pub fn clear_health_flag(&self, flag: HealthFlags) -> bool {
        self.health.fetch_and(!flag.0, Ordering::AcqRel) & flag.0 != 0
    }

    /// A metadata label, e.g. `label("zone")`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    /// Requests in flight to this endpoint.
    pub fn active_requests(&self) -> u64 {
        self.stats.active()
    }

    /// Upstream connections open now.
    pub fn open_connections(&self) -> u32 {
        self.upstream.open.open()
    }

    /// Opens a raw stream to the endpoint: TCP plus the cluster's transport (TLS),
    /// within the cluster's connect timeout. For TCP proxying and health checks.
    ///
    /// # Errors
    /// [`ProxyError::Connect`] when the connection or the transport handshake fails.
    pub async fn connect(&self) -> Result<Stream, ProxyError> {
        self.upstream.connector.connect().await
    }

    /// The connector of this endpoint (TCP plus transport, with the connect timeout).
    pub fn connector(&self) -> &crate::upstream::Connector {
        &self.upstream.connector
    }
}
