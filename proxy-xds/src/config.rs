//! The bootstrap: where the control plane is and who this proxy is to it.

use std::{collections::BTreeMap, time::Duration};

use envoy_types::pb::{
    envoy::config::core::v3::{node::UserAgentVersionType, Locality, Node},
    google::protobuf::{value::Kind, ListValue, Struct, Value},
};
use proxy_core::{
    config::{ByteSize, Section},
    ConfigError,
};
use serde::{Deserialize, Serialize};

/// The xDS bootstrap, written in YAML like every other section:
///
/// ```yaml
/// servers: ["127.0.0.1:18000"]        # host:port, tried in turn
/// node:
///   id: sidecar~10.0.0.7~app-1.default~default.svc.cluster.local
///   cluster: app
///   locality: { region: cn-hangzhou, zone: cn-hangzhou-a, sub_zone: rack-7 }
///   metadata: { ISTIO_VERSION: "1.22.0", LABELS: { app: web } }
/// connect_timeout: 2s                 # TCP and HTTP/2 handshake
/// request_timeout: 10s                # an unanswered keep-alive ping ends the stream
/// keepalive_interval: 30s
/// backoff: { initial: 500ms, max: 30s }
/// max_message_bytes: 16MiB
/// listeners: true                     # also LDS and RDS (off when absent)
/// api_type: delta                     # incremental xDS (sotw when absent)
/// secrets: [workload-cert, mesh-ca]   # SDS (none when absent)
/// streams: per_type                   # a stream per type, no ADS (ads when absent)
/// apply_min_interval: 100ms           # floods: at most one config swap per interval
/// tls:                                # TLS to the control plane (plain text when absent)
///   roots: { files: [/etc/certs/root-cert.pem] }
///   server_name: istiod.istio-system.svc
///   client_cert: { cert: /etc/certs/cert-chain.pem, key: /etc/certs/key.pem }
/// ```
///
/// # Example
/// ```
/// let cfg = proxy_xds::XdsConfig::from_yaml("servers: [\"127.0.0.1:18000\"]\nnode: {id: n1}")?;
/// assert_eq!(cfg.node.id, "n1");
/// assert_eq!(cfg.connect_timeout, std::time::Duration::from_secs(2));
///
/// let err = proxy_xds::XdsConfig::from_yaml("servers: []\nnode: {id: n1}").unwrap_err();
/// assert_eq!(err.to_string(), "servers: at least one control-plane address is needed");
/// # Ok::<(), proxy_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XdsConfig {
    /// Control-plane addresses, `host:port`; the client moves to the next one each
    /// time a stream ends.
    pub servers: Vec<String>,
    /// Who this proxy is to the control plane.
    pub node: NodeConfig,
    /// How long the TCP connect and the HTTP/2 handshake may take.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long a request to the control plane (an HTTP/2 keep-alive ping on the open
    /// stream) may go unanswered before the stream counts as lost and is reopened.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How often the open stream is checked with a keep-alive ping.
    #[serde(default = "default_keepalive", with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// Waits between reconnection attempts.
    #[serde(default)]
    pub backoff: BackoffConfig,
    /// The largest message accepted from the control plane.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: ByteSize,
    /// Also ask for listeners (LDS, a wildcard subscription) and the route
    /// configurations they name (RDS). Off when absent: the control plane then
    /// provides clusters and endpoints only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub listeners: bool,
    /// The variant of the ADS protocol: `sotw` (state of the world, every response
    /// carries the whole set of its type) or `delta` (incremental: responses carry
    /// what changed and what was removed). `sotw` when absent.
    #[serde(default, skip_serializing_if = "ApiType::is_sotw")]
    pub api_type: ApiType,
    /// Secrets to ask for over SDS, by name, besides those the clusters' transport
    /// sockets name: those the proxy's own TLS sections name
    /// (`certificates: [{secret: NAME}]`, `roots: {secret: NAME}`). None when absent.
    /// They reach the TLS layer through the client's
    /// [`SecretSink`](crate::SecretSink).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// `ads` (one aggregated stream for every type) or `per_type` (a stream of its
    /// own per type, CDS, EDS, LDS, RDS and SDS, on one connection: for control
    /// planes that do not serve ADS). `ads` when absent.
    #[serde(default, skip_serializing_if = "Streams::is_ads")]
    pub streams: Streams,
    /// TLS to the control plane: proxy-tls's origination settings (`roots`,
    /// `server_name`, `client_cert` for mTLS, ...). ALPN `h2` when `alpn` is empty;
    /// the name verified is the server address's host name when `server_name` is
    /// absent (an IP address needs `server_name` or an IP SAN). Plain-text HTTP/2
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<proxy_tls::OriginationConfig>,
    /// The shortest time between two config swaps (applies) of what the control
    /// plane sent. Every response is validated, and NACKed at once if refused, as
    /// it arrives; the ones accepted meanwhile go live together in the next swap
    /// and are ACKed then. An update after a quiet period goes live at once; a
    /// flood costs at most one swap per interval (and never two at a time). `0s`
    /// swaps after every response unless one is still being applied. 100 ms (the
    /// debounce Istio's control plane applies before it pushes) when absent; at
    /// most 1 minute.
    #[serde(default = "default_apply_min_interval", with = "humantime_serde")]
    pub apply_min_interval: Duration,
}

/// How the resource types travel ([`XdsConfig::streams`]), a snake_case string.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Streams {
    /// One ADS stream (`AggregatedDiscoveryService`) for every type.
    #[default]
    Ads,
    /// One stream per type on the type's own service (`ClusterDiscoveryService`,
    /// `EndpointDiscoveryService`, ...), each opened with its first request.
    PerType,
}

impl Streams {
    fn is_ads(&self) -> bool {
        *self == Self::Ads
    }
}

/// The variant of the ADS protocol ([`XdsConfig::api_type`]), a snake_case string.
///
/// # Example
/// ```
/// use proxy_xds::{ApiType, XdsConfig};
/// let cfg = XdsConfig::from_yaml("servers: [\"127.0.0.1:18000\"]\nnode: {id: n1}\napi_type: delta")?;
/// assert_eq!(cfg.api_type, ApiType::Delta);
/// # Ok::<(), proxy_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ApiType {
    /// State of the world: `StreamAggregatedResources`, each response the whole set
    /// of its type (for CDS and LDS).
    #[default]
    Sotw,
    /// Incremental: `DeltaAggregatedResources`, with subscribe and unsubscribe,
    /// `removed_resources`, and the versions held sent again on a new stream.
    Delta,
}

impl ApiType {
    fn is_sotw(&self) -> bool {
        *self == Self::Sotw
    }
}

/// Who this proxy is: Envoy's `Node`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node id (for Istio: `sidecar~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local`).
    pub id: String,
    /// The service cluster this node belongs to.
    #[serde(default)]
    pub cluster: String,
    /// Where the node runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<LocalityConfig>,
    /// Free-form metadata sent to the control plane (a protobuf `Struct`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, serde_json::Value>,
}

/// Region, zone and sub-zone of a node or of endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalityConfig {
    /// The region.
    pub region: String,
    /// The zone within the region.
    pub zone: String,
    /// The sub-zone within the zone.
    pub sub_zone: String,
}

/// Exponential back-off with jitter between reconnection attempts; reset after a
/// stream that received a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffConfig {
    /// The first wait.
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    /// The longest wait.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_keepalive() -> Duration {
    Duration::from_secs(30)
}
fn default_apply_min_interval() -> Duration {
    Duration::from_millis(100)
}
/// The largest [`XdsConfig::apply_min_interval`].
const MAX_APPLY_MIN_INTERVAL: Duration = Duration::from_secs(60);
fn default_max_message() -> ByteSize {
    ByteSize(16 << 20)
}

impl XdsConfig {
    /// A bootstrap for one control plane at `server` (`host:port`) and node `id`,
    /// every other setting at its default.
    ///
    /// # Example
    /// ```
    /// let cfg = proxy_xds::XdsConfig::new("127.0.0.1:18000", "node-1");
    /// assert!(cfg.validate().is_ok());
    /// ```
    pub fn new(server: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            servers: vec![server.into()],
            node: NodeConfig {
                id: id.into(),
                cluster: String::new(),
                locality: None,
                metadata: BTreeMap::new(),
            },
            connect_timeout: default_connect_timeout(),
            request_timeout: default_request_timeout(),
            keepalive_interval: default_keepalive(),
            backoff: BackoffConfig::default(),
            max_message_bytes: default_max_message(),
            listeners: false,
            api_type: ApiType::Sotw,
            secrets: Vec::new(),
            streams: Streams::Ads,
            tls: None,
            apply_min_interval: default_apply_min_interval(),
        }
    }

    /// Parses and validates the bootstrap from YAML.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let cfg: Self = proxy_core::config::from_yaml(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses and validates the bootstrap from a config section (the sidecar's `xds:`
    /// entry); paths are relative to the section.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field.
    pub fn from_section(section: &Section) -> Result<Self, ConfigError> {
        let cfg: Self = section.parse()?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses and validates the bootstrap from the `xds` section of `config`, its
    /// relative file paths (`tls`) resolved from the config file's directory
    /// (`Config::base_dir`). `None` when the config has no `xds` section.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field, relative to the section.
    ///
    /// # Example
    /// ```
    /// let config = proxy_core::config::Config::from_yaml(
    ///     "listeners: [{name: l, address: 127.0.0.1:0, virtual_hosts: []}]\nxds: {servers: [\"127.0.0.1:18000\"], node: {id: n1}}",
    /// )?;
    /// let xds = proxy_xds::XdsConfig::from_config(&config)?.expect("an xds section");
    /// assert_eq!(xds.node.id, "n1");
    /// # Ok::<(), proxy_core::ConfigError>(())
    /// ```
    pub fn from_config(config: &proxy_core::config::Config) -> Result<Option<Self>, ConfigError> {
        let Some(section) = &config.xds else {
            return Ok(None);
        };
        let mut cfg: Self = section.parse()?;
        cfg.resolve_paths(config.base_dir.as_deref());
        cfg.validate()?;
        Ok(Some(cfg))
    }

    /// Resolves the relative file paths of [`XdsConfig::tls`] from `base` (the
    /// config file's directory).
    pub fn resolve_paths(&mut self, base: Option<&std::path::Path>) {
        if let Some(tls) = &mut self.tls {
            tls.resolve_paths(|p| proxy_core::config::resolve_path(base, p));
        }
    }

    /// Checks what serde cannot: at least one server, each `host:port`; a node id;
    /// non-zero timeouts; metadata representable as a protobuf `Struct`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.servers.is_empty() {
            return Err(ConfigError::new(
                "servers",
                "at least one control-plane address is needed",
            ));
        }
        for (i, s) in self.servers.iter().enumerate() {
            let path = format!("servers[{i}]");
            if s.contains("://") {
                return Err(ConfigError::new(
                    path,
                    format!("{s:?}: write host:port (TLS is set with `tls`)"),
                ));
            }
            let uri: Result<http::Uri, _> = format!("http://{s}").parse();
            let host = match &uri {
                Ok(u) if u.port_u16().is_some() && u.path() == "/" => u.host().unwrap_or(""),
                _ => return Err(ConfigError::new(path, format!("{s:?} is not host:port"))),
            };
            if let Some(tls) = &self.tls {
                if let Err(e) = crate::tls::transport(tls, host) {
                    let field = proxy_core::config::join_path("tls", e.field());
                    return Err(ConfigError::new(field, proxy_core::DisplayChain(&e)));
                }
            }
        }
        if self.node.id.is_empty() {
            return Err(ConfigError::new("node.id", "must not be empty"));
        }
        for (name, d) in [
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
            ("keepalive_interval", self.keepalive_interval),
            ("backoff.initial", self.backoff.initial),
        ] {
            if d.is_zero() {
                return Err(ConfigError::new(name, "must be more than zero"));
            }
        }
        if self.apply_min_interval > MAX_APPLY_MIN_INTERVAL {
            return Err(ConfigError::new(
                "apply_min_interval",
                "must be at most 1m: every update would wait that long in a flood",
            ));
        }
        if self.backoff.max < self.backoff.initial {
            return Err(ConfigError::new(
                "backoff.max",
                "must not be less than backoff.initial",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, name) in self.secrets.iter().enumerate() {
            if name.is_empty() {
                return Err(ConfigError::new(
                    format!("secrets[{i}]"),
                    "must not be empty",
                ));
            }
            if !seen.insert(name) {
                return Err(ConfigError::new(
                    format!("secrets[{i}]"),
                    format!("{name:?} is listed twice"),
                ));
            }
        }
        for (k, v) in &self.node.metadata {
            if let Err(e) = to_value(v) {
                return Err(ConfigError::new(format!("node.metadata.{k}"), e));
            }
        }
        Ok(())
    }

    /// The `Node` sent on the first request of each stream.
    pub fn node(&self) -> Node {
        let n = &self.node;
        let fields = n
            .metadata
            .iter()
            .filter_map(|(k, v)| to_value(v).ok().map(|v| (k.clone(), v)))
            .collect();
        Node {
            id: n.id.clone(),
            cluster: n.cluster.clone(),
            metadata: (!n.metadata.is_empty()).then_some(Struct { fields }),
            locality: n.locality.as_ref().map(|l| Locality {
                region: l.region.clone(),
                zone: l.zone.clone(),
                sub_zone: l.sub_zone.clone(),
            }),
            user_agent_name: "proxy-xds".into(),
            user_agent_version_type: Some(UserAgentVersionType::UserAgentVersion(
                env!("CARGO_PKG_VERSION").into(),
            )),
            client_features: vec!["envoy.lb.does_not_support_overprovisioning".into()],
            ..Node::default()
        }
    }
}

/// JSON data as a protobuf `Value` (numbers as doubles, as protobuf has them).
fn to_value(v: &serde_json::Value) -> Result<Value, String> {
    use serde_json::Value as J;
    let kind = match v {
        J::Null => Kind::NullValue(0),
        J::Bool(b) => Kind::BoolValue(*b),
        J::Number(n) => Kind::NumberValue(
            n.as_f64()
                .ok_or_else(|| format!("{n} is not representable"))?,
        ),
        J::String(s) => Kind::StringValue(s.clone()),
        J::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(to_value).collect::<Result<_, _>>()?,
        }),
        J::Object(map) => Kind::StructValue(Struct {
            fields: map
                .iter()
                .map(|(k, v)| Ok((k.clone(), to_value(v)?)))
                .collect::<Result<_, String>>()?,
        }),
    };
    Ok(Value { kind: Some(kind) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_parses_with_paths_in_errors() {
        let cfg = XdsConfig::from_yaml(
            "servers: [\"cp.example:15010\"]\nnode: {id: n1, cluster: c, locality: {zone: z}, metadata: {a: 1, b: [x]}}\nbackoff: {initial: 1s}",
        )
        .unwrap();
        let node = cfg.node();
        assert_eq!(node.cluster, "c");
        assert_eq!(node.locality.unwrap().zone, "z");
        assert_eq!(node.metadata.unwrap().fields.len(), 2);
        assert_eq!(cfg.backoff.max, Duration::from_secs(30));
        assert_eq!(cfg.apply_min_interval, Duration::from_millis(100));
        let every =
            XdsConfig::from_yaml("servers: [\"a:1\"]\nnode: {id: n1}\napply_min_interval: 0s")
                .unwrap();
        assert_eq!(every.apply_min_interval, Duration::ZERO);

        for (yaml, path) in [
            ("servers: [\"http://a:1\"]\nnode: {id: n1}", "servers[0]"),
            ("servers: [\"a\"]\nnode: {id: n1}", "servers[0]"),
            ("servers: [\"a:1\"]\nnode: {id: \"\"}", "node.id"),
            ("servers: [\"a:1\"]\nnode: {id: n1, bogus: 1}", "node.bogus"),
            (
                "servers: [\"a:1\"]\nnode: {id: n1}\nconnect_timeout: 0s",
                "connect_timeout",
            ),
            (
                "servers: [\"a:1\"]\nnode: {id: n1}\nbackoff: {max: 1ms}",
                "backoff.max",
            ),
            (
                "servers: [\"a:1\"]\nnode: {id: n1}\napi_type: incremental",
                "api_type",
            ),
            (
                "servers: [\"a:1\"]\nnode: {id: n1}\nsecrets: [a, a]",
                "secrets[1]",
            ),
            (
                "servers: [\"a:1\"]\nnode: {id: n1}\napply_min_interval: 2m",
                "apply_min_interval",
            ),
        ] {
            let e = XdsConfig::from_yaml(yaml).unwrap_err();
            assert_eq!(e.path, path, "{yaml}: {e}");
        }
    }
}
