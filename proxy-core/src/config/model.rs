//! The serde types of the one config model: listeners, routes, clusters, endpoints.
//!
//! These are plain data. [`super::validate`] turns them into checked runtime objects;
//! nothing here is trusted until it has been through validation.

use std::{
    collections::BTreeMap, net::SocketAddr, num::NonZeroU32, path::PathBuf, sync::Arc,
    time::Duration,
};

use serde::{Deserialize, Serialize};

use super::Section;

/// The whole proxy configuration, as loaded from YAML (or produced by a control plane).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The admin listener (metrics, config dump, readiness, reload).
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// Process-wide runtime settings.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// The access log; off unless configured.
    #[serde(default)]
    pub access_log: Option<AccessLogConfig>,
    /// The listeners that accept downstream traffic.
    pub listeners: Vec<ListenerConfig>,
    /// The upstream clusters that routes send traffic to.
    #[serde(default)]
    pub clusters: Vec<ClusterConfig>,
    /// The directory relative paths in this config resolve from: the config file's
    /// ([`Config::load`]); the working directory when `None`. Not part of the file.
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
}

/// The admin listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Where the admin endpoint listens, e.g. `127.0.0.1:15000`.
    pub address: SocketAddr,
}

/// Process-wide runtime settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Worker threads. `0` means one per available core.
    #[serde(default = "default_workers")]
    pub worker_threads: usize,
    /// How the workers share the work.
    #[serde(default)]
    pub flavor: RuntimeFlavor,
    /// How long a graceful drain (SIGTERM) waits for in-flight requests.
    #[serde(default = "default_drain_timeout", with = "humantime_serde")]
    pub drain_timeout: Duration,
}

/// How worker threads share the connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeFlavor {
    /// Each worker runs its own single-threaded event loop and accepts on its own
    /// `SO_REUSEPORT` socket; a connection stays on the worker that accepted it. The
    /// faster choice (BENCHMARKS.md).
    #[default]
    PerCore,
    /// One work-stealing tokio runtime shared by all workers.
    MultiThread,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            flavor: RuntimeFlavor::default(),
            worker_threads: default_workers(),
            drain_timeout: default_drain_timeout(),
        }
    }
}

fn default_workers() -> usize {
    1
}
fn default_drain_timeout() -> Duration {
    Duration::from_secs(10)
}

/// The access log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// Line format.
    #[serde(default)]
    pub format: AccessLogFormat,
    /// A file path to append to; standard output when absent.
    #[serde(default)]
    pub path: Option<PathBuf>,
}

/// The format of access log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// A common-log-like text line.
    Text,
}

/// One listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Unique name; used in metrics labels.
    pub name: String,
    /// Where to listen.
    pub address: ListenAddress,
    /// What to serve: `auto` (HTTP/1.1, h2c and every registered protocol, told apart
    /// by their first bytes), `http1`, `http2`, or a registered protocol by name.
    #[serde(default)]
    pub protocol: ListenerProtocol,
    /// Settings of registered protocols by name (`bolt: {max_frame_bytes: 1048576}`),
    /// each parsed by that protocol's factory.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub protocol_options: BTreeMap<String, Section>,
    /// Protective limits for downstream connections.
    #[serde(default)]
    pub limits: ConnectionLimits,
    /// Virtual hosts and their routes.
    pub virtual_hosts: Vec<VirtualHostConfig>,
    /// Set `x-forwarded-for` / `x-forwarded-proto` on forwarded requests.
    #[serde(default = "default_true")]
    pub xff: bool,
    /// HTTP filters applied to every request of this listener, outermost first; each
    /// names a filter registered in [`crate::Registry`].
    #[serde(default)]
    pub http_filters: Vec<TypedConfig>,
    /// Network filters applied to every accepted connection, outermost first; each
    /// names a network filter registered in [`crate::Registry`].
    #[serde(default)]
    pub network_filters: Vec<TypedConfig>,
    /// Give each worker its own `SO_REUSEPORT` socket (per-core runtimes). When false,
    /// one socket is bound and accepted on by the first worker only.
    #[serde(default = "default_true")]
    pub reuse_port: bool,
}

/// A plug-in by registered name, with its own config section: a filter, a network
/// filter, a balancer, a transport, a cluster extension. Written
/// `{typed: NAME, config: {...}}`, or `NAME` alone when it takes no config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, from = "TypedConfigRepr")]
pub struct TypedConfig {
    /// The registered name, e.g. `rbac`.
    pub typed: String,
    /// The plug-in's settings, parsed by its factory.
    #[serde(default, skip_serializing_if = "Section::is_null")]
    pub config: Section,
}

impl TypedConfig {
    /// A plug-in by name with no config (all its defaults).
    pub fn named(typed: impl Into<String>) -> Self {
        Self {
            typed: typed.into(),
            config: Section::empty(),
        }
    }

    /// A plug-in by name with its typed config section.
    ///
    /// # Errors
    /// A section that cannot be represented as config data.
    pub fn with<T: Serialize>(
        typed: impl Into<String>,
        config: &T,
    ) -> Result<Self, crate::ConfigError> {
        Ok(Self {
            typed: typed.into(),
            config: Section::from_typed(config).map_err(|e| e.within("config"))?,
        })
    }
}

/// How a [`TypedConfig`] may be written: a name, or a map with `typed` and `config`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TypedConfigFull {
    typed: String,
    #[serde(default)]
    config: Section,
}

struct TypedConfigRepr(TypedConfig);

impl<'de> Deserialize<'de> for TypedConfigRepr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = TypedConfigRepr;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a registered name, or {typed: NAME, config: {...}}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v.is_empty() {
                    return Err(E::custom("the name must not be empty"));
                }
                Ok(TypedConfigRepr(TypedConfig::named(v)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                let full = TypedConfigFull::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                if full.typed.is_empty() {
                    return Err(serde::de::Error::custom(
                        "typed: the name must not be empty",
                    ));
                }
                Ok(TypedConfigRepr(TypedConfig {
                    typed: full.typed,
                    config: full.config,
                }))
            }
        }
        d.deserialize_any(Visit)
    }
}

impl From<TypedConfigRepr> for TypedConfig {
    fn from(r: TypedConfigRepr) -> Self {
        r.0
    }
}

pub(crate) fn default_true() -> bool {
    true
}

/// A listening address: `127.0.0.1:8080` or `unix:/path/to/socket`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ListenAddress {
    /// A TCP socket address.
    Tcp(SocketAddr),
    /// A Unix domain socket path.
    Unix(PathBuf),
}

impl TryFrom<String> for ListenAddress {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("a unix: address needs a path".into());
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        s.parse::<SocketAddr>()
            .map(Self::Tcp)
            .map_err(|e| format!("{s:?} is not a socket address (ip:port) nor unix:PATH: {e}"))
    }
}

impl From<ListenAddress> for String {
    fn from(a: ListenAddress) -> String {
        a.to_string()
    }
}

impl std::fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "{a}"),
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// What a listener serves: HTTP (`auto`, `http1`, `http2`) or a protocol registered
/// with [`crate::Registry::register_protocol`] (`bolt`, `dubbo`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum ListenerProtocol {
    /// Detect HTTP/2 prior knowledge (the connection preface) or a registered
    /// protocol from the first bytes, and fall back to HTTP/1.1.
    #[default]
    Auto,
    /// HTTP/1.x only.
    Http1,
    /// HTTP/2 with prior knowledge (h2c) only.
    Http2,
    /// A registered protocol only, by name.
    Named(Arc<str>),
}

impl ListenerProtocol {
    /// The protocol's config name.
    pub fn name(&self) -> &str {
        match self {
            Self::Auto => "auto",
            Self::Http1 => "http1",
            Self::Http2 => "http2",
            Self::Named(n) => n,
        }
    }
}

impl Serialize for ListenerProtocol {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for ListenerProtocol {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Ok(match name.as_str() {
            "auto" => Self::Auto,
            "http1" => Self::Http1,
            "http2" => Self::Http2,
            "" => return Err(serde::de::Error::custom("protocol name must not be empty")),
            _ => Self::Named(name.into()),
        })
    }
}

/// Protective limits applied to each downstream connection of a listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionLimits {
    /// Maximum concurrently open downstream connections.
    pub max_connections: u32,
    /// Maximum bytes of a request head (request line and headers).
    pub max_header_bytes: u32,
    /// Maximum number of request headers.
    pub max_headers: u32,
    /// The whole request head must arrive within this time (slowloris defence).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request in flight is closed after this time.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A request body that brings no bytes, or a response the client accepts no bytes
    /// of, for this long fails and closes the connection (slow-client defence).
    #[serde(with = "humantime_serde")]
    pub stream_idle_timeout: Duration,
    /// HTTP/2: maximum concurrent streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2: streams reset by the client before we answered, tolerated per
    /// connection before it is closed with `ENHANCE_YOUR_CALM` (rapid-reset defence).
    pub h2_max_pending_reset_streams: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 100_000,
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            stream_idle_timeout: Duration::from_secs(60),
            h2_max_concurrent_streams: 256,
            h2_max_pending_reset_streams: 100,
        }
    }
}

/// A virtual host: the routes that serve a set of domains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualHostConfig {
    /// Name used in metrics and config dumps.
    pub name: String,
    /// Host names served: exact (`api.example.com`), suffix wildcard (`*.example.com`),
    /// prefix wildcard (`api.*`) or `*` for any. The port of the Host header is ignored.
    pub domains: Vec<String>,
    /// Routes, tried in order; the first that matches wins.
    pub routes: Vec<RouteConfig>,
}

/// One route: a match and what to do with matching requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Name used in metrics labels; defaults to `<vhost>/<index>`.
    #[serde(default)]
    pub name: Option<String>,
    /// What a request must look like.
    #[serde(rename = "match")]
    pub matcher: RouteMatchConfig,
    /// The cluster that serves matching requests.
    pub cluster: String,
    /// Whole-request timeout including retries; no timeout when absent.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Retry policy; no retries when absent.
    #[serde(default)]
    pub retry: Option<RetryPolicyConfig>,
    /// Replace the matched path prefix with this one (prefix matches only).
    #[serde(default)]
    pub prefix_rewrite: Option<String>,
    /// Replace the Host / `:authority` sent upstream.
    #[serde(default)]
    pub host_rewrite: Option<String>,
    /// Headers added to the request sent upstream.
    #[serde(default)]
    pub request_headers_to_add: Vec<HeaderValueConfig>,
    /// Headers removed from the request sent upstream.
    #[serde(default)]
    pub request_headers_to_remove: Vec<String>,
    /// Headers added to the response sent downstream.
    #[serde(default)]
    pub response_headers_to_add: Vec<HeaderValueConfig>,
    /// Headers removed from the response sent downstream.
    #[serde(default)]
    pub response_headers_to_remove: Vec<String>,
    /// Filters for this route only, run after the listener's `http_filters` once the
    /// route is matched; the same registered factories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<TypedConfig>,
}

/// The match part of a route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatchConfig {
    /// How the path must match; any path when absent.
    #[serde(default)]
    pub path: Option<PathMatchConfig>,
    /// Allowed methods; any method when empty.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Header conditions, all of which must hold.
    #[serde(default)]
    pub headers: Vec<crate::matcher::HeaderMatch>,
}

/// How a path must match. Query strings are not part of the path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PathMatchConfig {
    /// The path equals this string.
    Exact(String),
    /// The path starts with this string.
    Prefix(String),
    /// The whole path matches this regular expression.
    Regex(String),
}

/// A header to add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderValueConfig {
    /// Header name.
    pub name: String,
    /// Header value.
    pub value: String,
    /// Append to existing values instead of replacing them.
    #[serde(default)]
    pub append: bool,
}

/// When and how often to retry a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicyConfig {
    /// Retries after the first attempt.
    pub attempts: u32,
    /// Conditions that make a retry worth trying.
    #[serde(default = "default_retry_on")]
    pub retry_on: Vec<RetryOn>,
    /// Timeout of each attempt; the route timeout bounds the total.
    #[serde(default, with = "humantime_serde")]
    pub per_try_timeout: Option<Duration>,
}

fn default_retry_on() -> Vec<RetryOn> {
    vec![RetryOn::ConnectFailure, RetryOn::Reset]
}

/// A condition under which a request may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetryOn {
    /// The upstream connection could not be made (the request never left).
    ConnectFailure,
    /// The upstream reset the connection before answering.
    Reset,
    /// The upstream answered 5xx.
    #[serde(rename = "5xx")]
    ServerError,
    /// The upstream answered 502, 503 or 504.
    GatewayError,
    /// An attempt timed out (`per_try_timeout`).
    PerTryTimeout,
}

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
    /// A response body from an endpoint that brings no bytes, or a request body the
    /// endpoint accepts no bytes of, for this long fails that request.
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// Maximum open connections per endpoint (HTTP/1.1: also the request concurrency).
    pub max_connections: u32,
    /// Idle connections kept per endpoint.
    pub max_idle: u32,
    /// An idle pooled connection is closed after this time.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_idle: 1024,
            idle_timeout: Duration::from_secs(90),
        }
    }
}

/// A retry budget: retries allowed = `min_retries_per_second` + `budget_percent`% of requests, over
/// a sliding ten-second window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBudgetConfig {
    /// Retries allowed as a share of first attempts, 0-100 (20 by default).
    pub budget_percent: super::Percent,
    /// Retries always allowed per second, whatever the request rate.
    pub min_retries_per_second: u32,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        Self {
            budget_percent: super::Percent::try_from(20.0).unwrap_or_default(),
            min_retries_per_second: 10,
        }
    }
}
