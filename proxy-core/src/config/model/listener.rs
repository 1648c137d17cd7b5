//! Listeners: address, protocol, connection limits, and the typed plug-in sections.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};

use super::VirtualHostConfig;
use crate::config::Section;

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
    /// The proxy's name in the `Via` field it adds to every request it forwards and
    /// every response it passes back (RFC 9110 7.6.3), after the protocol the message
    /// came in: `via: edge-1` sends `Via: 1.1 edge-1`. A request whose `Via` already
    /// names the proxy is answered 508 (`forwarding_loop`) instead of going round
    /// again. A token of at most 64 bytes; absent, no `Via` is added or checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// HTTP filters applied to every request of this listener, outermost first; each
    /// names a filter registered in [`crate::Registry`]. A route or virtual host may
    /// turn one off, on, or replace its config by the entry's name (`filter_overrides`).
    #[serde(default)]
    pub http_filters: Vec<HttpFilterConfig>,
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

/// One of a listener's `http_filters`: a registered filter with its config, the name
/// routes override it by (`filter_overrides`), and whether it is off unless a route
/// turns it on. Written like a [`TypedConfig`] (`NAME` alone, or `{typed, config}`),
/// with optional `name` (default: the `typed` name; unique in the listener) and
/// `disabled` (default false).
///
/// # Example
/// ```
/// use proxy_core::config::{HttpFilterConfig, TypedConfig};
///
/// let f: HttpFilterConfig =
///     proxy_core::config::from_yaml("{typed: jwt_auth, name: jwt, disabled: true}").unwrap();
/// assert_eq!(f.name(), "jwt");
/// assert!(f.disabled);
/// let g = HttpFilterConfig::from(TypedConfig::named("rbac"));
/// assert_eq!(g.name(), "rbac");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, from = "HttpFilterRepr")]
pub struct HttpFilterConfig {
    /// The name routes override the filter by; the `typed` name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The registered filter name, e.g. `rbac`.
    pub typed: String,
    /// The filter's settings, parsed by its factory.
    #[serde(default, skip_serializing_if = "Section::is_null")]
    pub config: Section,
    /// Off on every route but those whose `filter_overrides` turn it on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

impl HttpFilterConfig {
    /// The name routes override this filter by: `name`, else the `typed` name.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.typed)
    }

    /// Names the entry (for `filter_overrides`).
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Turns the filter off except on routes whose overrides turn it on.
    #[must_use]
    pub fn disabled(mut self) -> Self {
        self.disabled = true;
        self
    }
}

impl From<TypedConfig> for HttpFilterConfig {
    fn from(t: TypedConfig) -> Self {
        Self {
            name: None,
            typed: t.typed,
            config: t.config,
            disabled: false,
        }
    }
}

/// How an [`HttpFilterConfig`] may be written in full.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFilterFull {
    #[serde(default)]
    name: Option<String>,
    typed: String,
    #[serde(default)]
    config: Section,
    #[serde(default)]
    disabled: bool,
}

struct HttpFilterRepr(HttpFilterConfig);

impl<'de> Deserialize<'de> for HttpFilterRepr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = HttpFilterRepr;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a registered name, or {typed: NAME, config: {...}, name, disabled}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v.is_empty() {
                    return Err(E::custom("the name must not be empty"));
                }
                Ok(HttpFilterRepr(TypedConfig::named(v).into()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                let full =
                    HttpFilterFull::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                if full.typed.is_empty() {
                    return Err(serde::de::Error::custom(
                        "typed: the name must not be empty",
                    ));
                }
                if full.name.as_deref() == Some("") {
                    return Err(serde::de::Error::custom("name: must not be empty"));
                }
                Ok(HttpFilterRepr(HttpFilterConfig {
                    name: full.name,
                    typed: full.typed,
                    config: full.config,
                    disabled: full.disabled,
                }))
            }
        }
        d.deserialize_any(Visit)
    }
}

impl From<HttpFilterRepr> for HttpFilterConfig {
    fn from(r: HttpFilterRepr) -> Self {
        r.0
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
    pub max_header_bytes: crate::config::ByteSize,
    /// Maximum number of request headers.
    pub max_headers: u32,
    /// The whole request head must arrive within this time (slowloris defence).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request in flight is closed after this time.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A request body that brings no bytes, or a response the client accepts no bytes
    /// of, for this long fails (slow-client defence): over HTTP/1.1 the connection is
    /// closed; over HTTP/2 the request is answered 408 (a stalled body) or its stream
    /// cancelled (no flow-control window), and the connection's other streams go on.
    #[serde(with = "humantime_serde")]
    pub stream_idle_timeout: Duration,
    /// A request body whose `content-length` is at most this is read whole after the
    /// filters and before the request takes any upstream resource, and must arrive
    /// within `header_read_timeout` (else 408): a client that sends a small body
    /// slowly holds no upstream connection meanwhile (slow-body defence). Longer
    /// bodies, and bodies of unknown length, stream to the upstream as they arrive.
    /// `0` streams every body.
    pub request_body_buffer: crate::config::ByteSize,
    /// A request body not read whole first (longer than `request_body_buffer`, or of
    /// unknown length: chunked, or HTTP/2 without `content-length`) streams to the
    /// upstream as it arrives, and must average at least this many bytes per second of
    /// the time the proxy waits on the client for it, after a grace of
    /// `header_read_timeout` (else 408, and the upstream exchange is abandoned): a
    /// client that trickles an upload holds an upstream connection for seconds, not
    /// hours. Time the upstream is not reading does not count. Streams quiet by
    /// design are exempt unless their length is announced: gRPC (`content-type:
    /// application/grpc...`) and `CONNECT`. `0` sets no minimum.
    pub request_body_min_rate: crate::config::ByteSize,
    /// HTTP/2: maximum concurrent streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// Request header names with an underscore (`x_api_key`): `forward` (default),
    /// `drop` or `reject` (400). A name that folds onto a framing or connection field
    /// (`transfer_encoding`, `content_length`, `host` ...) is never forwarded: it is
    /// refused, or dropped under `drop` (a lenient upstream could read it as that field).
    pub headers_with_underscores: UnderscoreHeaders,
    /// HTTP/2: streams reset by the client before we answered, tolerated per
    /// connection before it is closed with `ENHANCE_YOUR_CALM` (rapid-reset defence),
    /// at once and with no new stream served. Past the limit, a connection is closed
    /// only while its reset streams outnumber its answered ones: a client that cancels
    /// now and then keeps its connection however long it lives.
    pub h2_max_pending_reset_streams: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 100_000,
            max_header_bytes: crate::config::ByteSize(64 * 1024),
            headers_with_underscores: UnderscoreHeaders::default(),
            max_headers: 100,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            stream_idle_timeout: Duration::from_secs(60),
            request_body_buffer: crate::config::ByteSize(16 * 1024),
            request_body_min_rate: crate::config::ByteSize(240),
            h2_max_concurrent_streams: 256,
            h2_max_pending_reset_streams: 100,
        }
    }
}

/// What a listener does with request header names that have an underscore.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnderscoreHeaders {
    /// Forward them (names that fold onto a framing field are still refused).
    #[default]
    Forward,
    /// Drop them from the request.
    Drop,
    /// Answer 400.
    Reject,
}
