//! Upstream clusters: protocol, endpoints, connection pool, retry budget.

use std::{collections::BTreeMap, net::SocketAddr, num::NonZeroU32, sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};

use super::TypedConfig;
use crate::config::Section;

/// An upstream cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Unique name; routes refer to it.
    pub name: String,
    /// The protocol spoken to the endpoints.
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// The endpoints.
    pub endpoints: Vec<EndpointConfig>,
    /// TCP connect timeout.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long an endpoint may keep a request waiting without progress, like nginx's
    /// `proxy_read_timeout`: no byte of the answer's head for this long after the
    /// request went out (504 `upstream_timeout`), or no byte of the answer's body for
    /// this long (the answer is cut off), fails that request, over HTTP/1.1 and
    /// HTTP/2 alike. So does a request body the endpoint takes no bytes of (over
    /// HTTP/2: opens no flow-control window for); a body waiting for its client is
    /// the listener's `stream_idle_timeout`'s business. The route's `timeout` bounds
    /// the whole exchange. Raise it for endpoints that answer long polls.
    #[serde(default = "default_stream_idle_timeout", with = "humantime_serde")]
    pub stream_idle_timeout: Duration,
    /// Connection pool settings.
    #[serde(default)]
    pub pool: PoolConfig,
    /// The load-balancing policy: `round_robin` (built in) or a balancer registered by
    /// a capability crate, `{typed: maglev, config: {...}}`.
    #[serde(default = "default_lb")]
    pub lb: TypedConfig,
    /// Caps retries to a share of requests so that retries cannot amplify an outage.
    #[serde(default)]
    pub retry_budget: RetryBudgetConfig,
    /// Cluster-wide limits on concurrent requests and retries (Envoy's circuit
    /// breakers); unlimited when absent.
    #[serde(default, skip_serializing_if = "CircuitBreakersConfig::is_unlimited")]
    pub circuit_breakers: CircuitBreakersConfig,
    /// Settings of a registered upstream protocol (`protocol: bolt`), parsed by its
    /// factory.
    #[serde(default, skip_serializing_if = "Section::is_null")]
    pub protocol_options: Section,
    /// How connections to the endpoints are secured: a registered transport
    /// (`typed: tls`); plain TCP when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<TypedConfig>,
    /// Cluster extensions such as outlier detection and health checks, by registered
    /// name ([`crate::Registry::register_cluster_extension`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<TypedConfig>,
}

fn default_lb() -> TypedConfig {
    TypedConfig::named("round_robin")
}

fn default_stream_idle_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}

/// The protocol spoken to a cluster's endpoints: `http1`, `http2`, or the name of a
/// protocol registered with [`crate::Registry::register_upstream_protocol`] (`bolt`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with keep-alive connection pooling.
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (h2c), requests multiplexed on shared connections.
    Http2,
    /// A registered protocol, by name.
    Named(Arc<str>),
}

impl UpstreamProtocol {
    /// The protocol's config name.
    pub fn name(&self) -> &str {
        match self {
            Self::Http1 => "http1",
            Self::Http2 => "http2",
            Self::Named(n) => n,
        }
    }
}

impl Serialize for UpstreamProtocol {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for UpstreamProtocol {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Ok(match name.as_str() {
            "http1" => Self::Http1,
            "http2" => Self::Http2,
            "" => return Err(serde::de::Error::custom("protocol name must not be empty")),
            _ => Self::Named(name.into()),
        })
    }
}

/// One endpoint: `127.0.0.1:8080`, or a map with an address, a weight and metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EndpointConfig {
    /// Just an address, weight 1.
    Address(SocketAddr),
    /// An address with a weight and metadata.
    Detailed {
        /// The endpoint address.
        address: SocketAddr,
        /// Relative weight for balancers that use one (at least 1).
        #[serde(default = "default_weight")]
        weight: NonZeroU32,
        /// Labels such as `zone`, `data_centre` or `group`, read by balancers and
        /// traffic steering.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        metadata: BTreeMap<String, String>,
    },
}

fn default_weight() -> NonZeroU32 {
    NonZeroU32::MIN
}

impl EndpointConfig {
    /// The endpoint address.
    pub fn address(&self) -> SocketAddr {
        match self {
            Self::Address(a) | Self::Detailed { address: a, .. } => *a,
        }
    }
    /// The endpoint weight (1 when not given).
    pub fn weight(&self) -> NonZeroU32 {
        match self {
            Self::Address(_) => NonZeroU32::MIN,
            Self::Detailed { weight, .. } => *weight,
        }
    }
    /// The endpoint's metadata labels (empty when not given).
    pub fn metadata(&self) -> BTreeMap<String, String> {
        match self {
            Self::Address(_) => BTreeMap::new(),
            Self::Detailed { metadata, .. } => metadata.clone(),
        }
    }
}

/// Upstream connection pool settings.
///
/// An HTTP/2 endpoint gets as many connections as its stream limit
/// (`SETTINGS_MAX_CONCURRENT_STREAMS`) asks for: a request finding every connection
/// of its worker at the limit opens another, up to `max_connections`, past which it
/// waits for a stream in the least busy connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// Maximum open connections per endpoint (HTTP/1.1: also the request concurrency).
    pub max_connections: u32,
    /// Idle connections kept per endpoint (HTTP/1.1).
    pub max_idle: u32,
    /// An idle pooled connection is closed after this time; so is an HTTP/2
    /// connection that carried no request for this long.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Requests a connection carries at most: an HTTP/1.1 connection closes after
    /// its last answer, an HTTP/2 one takes no more streams and closes once they
    /// end. Set it to the upstream's own bound (nginx's `keepalive_requests`, 1,000
    /// by default) so that requests go to a fresh connection rather than being
    /// turned away by one going away. Absent: no bound; an HTTP/2 upstream seen going
    /// away (GOAWAY) after so many streams gets no more on a connection for the next
    /// 30 seconds all the same.
    pub max_requests_per_connection: Option<NonZeroU32>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_idle: 1024,
            idle_timeout: Duration::from_secs(90),
            max_requests_per_connection: None,
        }
    }
}

/// A retry budget: retries allowed = `min_retries_per_second` + `budget_percent`% of requests, over
/// a sliding ten-second window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBudgetConfig {
    /// Retries allowed as a share of first attempts, 0-100 (20 by default).
    pub budget_percent: crate::config::Percent,
    /// Retries always allowed per second, whatever the request rate.
    pub min_retries_per_second: u32,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        Self {
            budget_percent: crate::config::Percent::clamped(20.0),
            min_retries_per_second: 10,
        }
    }
}

/// Cluster-wide budgets (Envoy's circuit breakers): a request over a budget fails at
/// once with 503 (`x-proxy-error: overflow`, `x-proxy-error-detail: max_requests`),
/// a retry over its budget is not attempted. Each limit is off when absent.
///
/// `max_connections` caps the upstream connections of all endpoints and workers: at
/// the cap, a request that needs a new connection waits (is pending) for an idle one
/// or for one to close, at most the cluster's `connect_timeout` (then 503 with
/// detail `max_connections`); `max_pending_requests` bounds the waiting requests
/// (past it, 503 at once with detail `max_pending_requests`).
///
/// ```yaml
/// circuit_breakers: {max_requests: 1000, max_retries: 3, max_connections: 100, max_pending_requests: 50}
/// ```
///
/// ```
/// let cfg: proxy_core::config::CircuitBreakersConfig =
///     proxy_core::config::from_yaml("{max_connections: 2, max_pending_requests: 10}").unwrap();
/// assert_eq!((cfg.max_connections, cfg.max_pending_requests), (Some(2), Some(10)));
/// assert!(!cfg.is_unlimited());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakersConfig {
    /// Requests in flight to the cluster at once, all endpoints together (a request
    /// holds its place across its retries, until its response head arrives).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u32>,
    /// Retries in flight to the cluster at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Open upstream connections (HTTP/1.1 and HTTP/2), all endpoints and workers
    /// together. Unlike `pool.max_connections` (per endpoint, failing at once), a
    /// request at this cap waits for a connection. Protocol plug-ins' connections are
    /// not counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// Requests waiting at the `max_connections` cap at once; unbounded when absent,
    /// without effect when `max_connections` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<u32>,
}

impl CircuitBreakersConfig {
    /// Whether no limit is set.
    pub fn is_unlimited(&self) -> bool {
        self.max_requests.is_none()
            && self.max_retries.is_none()
            && self.max_connections.is_none()
            && self.max_pending_requests.is_none()
    }
}
