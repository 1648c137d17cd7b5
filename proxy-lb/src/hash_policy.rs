//! Where the hash balancers (ring hash, Maglev) take a request's key from.
//!
//! A policy is a list of sources tried in order; the first one the request carries
//! gives the key, hashed with xxHash64. A request carrying none has no key and the
//! balancer picks at random.

use http::{header, request::Parts, HeaderName};
use proxy_core::{matcher::Header, rpc::RpcInfo};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh64::{xxh64, Xxh64};

use crate::ConfigError;

/// One key source of a hash policy, as configured: a one-key map naming the source,
/// or a bare string for a source without settings.
///
/// ```yaml
/// hash_policy:
///   - header: {name: x-user-id}
///   - cookie: {name: session}
///   - query_parameter: {name: uid}
///   - rpc: {include_method: false}   # service/method of gRPC, Bolt, Dubbo requests
///   - source_ip
///   - route                          # the key the request's route computed
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum HashPolicyConfig {
    /// The first value of a request header.
    Header {
        /// The header name.
        name: Header,
    },
    /// The value of a cookie.
    Cookie {
        /// The cookie name.
        name: String,
    },
    /// The value of a query parameter, as sent (not percent-decoded).
    QueryParameter {
        /// The parameter name.
        name: String,
    },
    /// The client's IP address (from `proxy_core::proxy::ConnInfo`).
    SourceIp,
    /// The RPC service, and by default the method (`service/method`): from
    /// `proxy_core::rpc::RpcInfo` set by the codec (Bolt, Dubbo, gRPC), or for a
    /// gRPC request without it from the path `/package.Service/Method`.
    Rpc {
        /// Hash `service/method` rather than the service alone.
        #[serde(default = "yes")]
        include_method: bool,
    },
    /// The key the request's route computed with its own hash policy (the
    /// `route_hash` route filter, [`crate::route_hash`]), as Envoy hashes per route.
    Route,
}

/// A request's key hash computed by its route ([`crate::route_hash`]), read by the
/// `route` key source of a cluster's hash policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteHashKey(pub u64);

impl HashPolicyConfig {
    /// The first value of header `name`.
    pub fn header(name: HeaderName) -> Self {
        Self::Header { name: Header(name) }
    }

    /// The value of cookie `name`.
    pub fn cookie(name: impl Into<String>) -> Self {
        Self::Cookie { name: name.into() }
    }

    /// The value of query parameter `name`.
    pub fn query_parameter(name: impl Into<String>) -> Self {
        Self::QueryParameter { name: name.into() }
    }

    /// The config name of the source (`header`, `source_ip`, ...), as in its path.
    fn kind(&self) -> &'static str {
        match self {
            Self::Header { .. } => "header",
            Self::Cookie { .. } => "cookie",
            Self::QueryParameter { .. } => "query_parameter",
            Self::SourceIp => "source_ip",
            Self::Rpc { .. } => "rpc",
            Self::Route => "route",
        }
    }
}

fn yes() -> bool {
    true
}

/// A validated key source.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeySource {
    Header(HeaderName),
    Cookie(Box<str>),
    Query(Box<str>),
    SourceIp,
    Rpc { include_method: bool },
    Route,
}

/// A validated hash policy: computes a request's key hash.
///
/// # Example
/// ```
/// use http::HeaderName;
/// use proxy_lb::hash_policy::{HashPolicy, HashPolicyConfig};
///
/// let policy = HashPolicy::try_new(
///     &[HashPolicyConfig::header(HeaderName::from_static("x-user"))],
///     "hash_policy",
/// )?;
/// let (parts, _) = http::Request::builder().header("x-user", "ann").body(())?.into_parts();
/// let (other, _) = http::Request::builder().body(())?.into_parts();
/// assert!(policy.hash(&parts).is_some());
/// assert_eq!(policy.hash(&other), None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashPolicy {
    sources: Box<[KeySource]>,
}

impl HashPolicy {
    /// Validates `configs`; `field` is their path in the section, used in errors.
    ///
    /// # Errors
    /// An empty list, an empty or invalid cookie name, an empty parameter name.
    pub fn try_new(configs: &[HashPolicyConfig], field: &str) -> Result<Self, ConfigError> {
        if configs.is_empty() {
            return Err(ConfigError::invalid(
                field,
                "must list at least one key source (header, cookie, query_parameter, source_ip, rpc)",
            ));
        }
        let sources = configs
            .iter()
            .enumerate()
            .map(|(i, c)| source(c, &format!("{field}[{i}].{}.name", c.kind())))
            .collect::<Result<_, _>>()?;
        Ok(Self { sources })
    }

    /// Whether a source needs the client address
    /// (`proxy_core::proxy::ConnInfo` in the request extensions).
    pub fn needs_conn_info(&self) -> bool {
        self.sources.contains(&KeySource::SourceIp)
    }

    /// The hash of the request's key: the first source the request carries, or
    /// `None` when it carries none.
    pub fn hash(&self, req: &Parts) -> Option<u64> {
        self.sources.iter().find_map(|s| s.hash(req))
    }
}

fn source(c: &HashPolicyConfig, field: &str) -> Result<KeySource, ConfigError> {
    let non_empty = |name: &str, what: &str| {
        if name.is_empty() {
            Err(ConfigError::invalid(
                field,
                format!("{what} name must not be empty"),
            ))
        } else {
            Ok(name.into())
        }
    };
    Ok(match c {
        HashPolicyConfig::Header { name } => KeySource::Header(name.0.clone()),
        HashPolicyConfig::Cookie { name } => {
            if name
                .bytes()
                .any(|b| b <= b' ' || b == b';' || b == b'=' || b >= 0x7f)
            {
                return Err(ConfigError::invalid(
                    field,
                    format!("{name:?} is not a valid cookie name"),
                ));
            }
            KeySource::Cookie(non_empty(name, "cookie")?)
        }
        HashPolicyConfig::QueryParameter { name } => {
            KeySource::Query(non_empty(name, "query parameter")?)
        }
        HashPolicyConfig::SourceIp => KeySource::SourceIp,
        HashPolicyConfig::Rpc { include_method } => KeySource::Rpc {
            include_method: *include_method,
        },
        HashPolicyConfig::Route => KeySource::Route,
    })
}

/// The seed of key hashes: changing it moves every key, so it is fixed forever.
const KEY_SEED: u64 = 0;

fn hash_bytes(b: &[u8]) -> u64 {
    xxh64(b, KEY_SEED)
}

impl KeySource {
    fn hash(&self, req: &Parts) -> Option<u64> {
        match self {
            Self::Route => req.extensions.get::<RouteHashKey>().map(|k| k.0),
            Self::Header(name) => req.headers.get(name).map(|v| hash_bytes(v.as_bytes())),
            Self::Cookie(name) => cookie(req, name).map(hash_bytes),
            Self::Query(name) => query_param(req, name).map(hash_bytes),
            Self::SourceIp => {
                let peer = req.extensions.get::<proxy_core::proxy::ConnInfo>()?.peer?;
                Some(match peer.ip() {
                    std::net::IpAddr::V4(ip) => hash_bytes(&ip.octets()),
                    std::net::IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
                        Some(v4) => hash_bytes(&v4.octets()),
                        None => hash_bytes(&ip.octets()),
                    },
                })
            }
            Self::Rpc { include_method } => {
                if let Some(rpc) = req.extensions.get::<RpcInfo>() {
                    let mut h = Xxh64::new(KEY_SEED);
                    h.update(rpc.service.as_bytes());
                    if *include_method {
                        h.update(b"/");
                        h.update(rpc.method.as_bytes());
                    }
                    return Some(h.digest());
                }
                let path = grpc_path(req)?;
                if *include_method {
                    Some(hash_bytes(path.as_bytes()))
                } else {
                    let service = path.split_once('/').map_or(path, |(s, _)| s);
                    Some(hash_bytes(service.as_bytes()))
                }
            }
        }
    }
}

/// `service/method` of a gRPC request (`content-type: application/grpc...`) that no
/// codec described with [`RpcInfo`]: its path is `/service/method`.
fn grpc_path(req: &Parts) -> Option<&str> {
    if !proxy_core::rpc::is_grpc(&req.headers) {
        return None;
    }
    let path = req.uri.path().strip_prefix('/')?;
    let (service, method) = path.split_once('/')?;
    if service.is_empty() || method.is_empty() || method.contains('/') {
        return None;
    }
    Some(path)
}

/// The value of cookie `name` in the request's `cookie` headers.
fn cookie<'a>(req: &'a Parts, name: &str) -> Option<&'a [u8]> {
    req.headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            (&pair[..eq] == name.as_bytes()).then(|| {
                let v = &pair[eq + 1..];
                v.strip_prefix(b"\"")
                    .and_then(|v| v.strip_suffix(b"\""))
                    .unwrap_or(v)
            })
        })
}

/// The value of query parameter `name`, as sent.
fn query_param<'a>(req: &'a Parts, name: &str) -> Option<&'a [u8]> {
    req.uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(req: http::request::Builder) -> Parts {
        req.body(())
            .map(|r| r.into_parts().0)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn policy(c: HashPolicyConfig) -> HashPolicy {
        HashPolicy::try_new(&[c], "hash_policy").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn header_cookie_query() {
        let h = policy(HashPolicyConfig::header(HeaderName::from_static("x-k")));
        let c = policy(HashPolicyConfig::cookie("sid"));
        let q = policy(HashPolicyConfig::query_parameter("uid"));
        let r = parts(
            http::Request::builder()
                .uri("/a?x=1&uid=42&z")
                .header("x-k", "42")
                .header("cookie", "a=b; sid=\"42\"; c=d"),
        );
        let want = hash_bytes(b"42");
        assert_eq!(h.hash(&r), Some(want));
        assert_eq!(c.hash(&r), Some(want));
        assert_eq!(q.hash(&r), Some(want));
        let none = parts(
            http::Request::builder()
                .uri("/a?uidx=1")
                .header("cookie", "sidx=1"),
        );
        assert_eq!(h.hash(&none), None);
        assert_eq!(c.hash(&none), None);
        assert_eq!(q.hash(&none), None);
    }

    #[test]
    fn first_source_present_wins() {
        let p = HashPolicy::try_new(
            &[
                HashPolicyConfig::header(HeaderName::from_static("x-a")),
                HashPolicyConfig::header(HeaderName::from_static("x-b")),
            ],
            "hash_policy",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let only_b = parts(http::Request::builder().header("x-b", "v"));
        let both = parts(
            http::Request::builder()
                .header("x-a", "u")
                .header("x-b", "v"),
        );
        assert_eq!(p.hash(&only_b), Some(hash_bytes(b"v")));
        assert_eq!(p.hash(&both), Some(hash_bytes(b"u")));
    }

    #[test]
    fn source_ip_and_rpc() {
        let s = policy(HashPolicyConfig::SourceIp);
        assert!(s.needs_conn_info());
        let mut r = parts(http::Request::builder());
        assert_eq!(s.hash(&r), None);
        let peer: std::net::SocketAddr = "10.1.2.3:5555".parse().unwrap_or_else(|e| panic!("{e}"));
        r.extensions
            .insert(proxy_core::proxy::ConnInfo::new(Some(peer), false));
        assert_eq!(s.hash(&r), Some(hash_bytes(&[10, 1, 2, 3])));

        let m = policy(HashPolicyConfig::Rpc {
            include_method: true,
        });
        let svc = policy(HashPolicyConfig::Rpc {
            include_method: false,
        });
        let g = parts(
            http::Request::builder()
                .uri("/pkg.Greeter/SayHello")
                .header("content-type", "application/grpc+proto"),
        );
        assert_eq!(m.hash(&g), Some(hash_bytes(b"pkg.Greeter/SayHello")));
        assert_eq!(svc.hash(&g), Some(hash_bytes(b"pkg.Greeter")));
        let odd_case = parts(
            http::Request::builder()
                .uri("/pkg.Greeter/SayHello")
                .header("content-type", "Application/GRPC"),
        );
        assert_eq!(m.hash(&odd_case), Some(hash_bytes(b"pkg.Greeter/SayHello")));
        let mut plain = parts(http::Request::builder().uri("/pkg.Greeter/SayHello"));
        assert_eq!(m.hash(&plain), None);
        plain
            .extensions
            .insert(RpcInfo::new("bolt", "pkg.Greeter", "SayHello"));
        assert_eq!(m.hash(&plain), Some(hash_bytes(b"pkg.Greeter/SayHello")));
        assert_eq!(svc.hash(&plain), Some(hash_bytes(b"pkg.Greeter")));
    }

    #[test]
    fn bad_configs_name_the_field() {
        let e = HashPolicy::try_new(&[], "hash_policy")
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.starts_with("hash_policy: ")));
        let e = HashPolicy::try_new(
            &[HashPolicyConfig::SourceIp, HashPolicyConfig::cookie("a b")],
            "hash_policy",
        )
        .err()
        .map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.starts_with("hash_policy[1].cookie.name: ")),
            "{e:?}"
        );
        let e = HashPolicy::try_new(&[HashPolicyConfig::query_parameter("")], "hp")
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.starts_with("hp[0].query_parameter.name: ")));
    }

    #[test]
    fn yaml_shape() {
        let v: Vec<HashPolicyConfig> = proxy_core::config::from_yaml(
            "- header: {name: x}\n- source_ip\n- rpc: {include_method: false}\n- rpc: {}\n- cookie: {name: s}\n- query_parameter: {name: q}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            v,
            [
                HashPolicyConfig::header(HeaderName::from_static("x")),
                HashPolicyConfig::SourceIp,
                HashPolicyConfig::Rpc {
                    include_method: false
                },
                HashPolicyConfig::Rpc {
                    include_method: true
                },
                HashPolicyConfig::cookie("s"),
                HashPolicyConfig::query_parameter("q"),
            ]
        );
        let back: Vec<HashPolicyConfig> = proxy_core::config::to_yaml(&v)
            .and_then(|y| proxy_core::config::from_yaml(&y))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, v);
        let e = proxy_core::config::from_yaml::<Vec<HashPolicyConfig>>(
            "- header: {name: x, extra: 1}\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("extra"), "{e}");
        let e = proxy_core::config::from_yaml::<Vec<HashPolicyConfig>>(
            "- source_ip\n- header: {name: \"bad name\"}\n",
        )
        .unwrap_err();
        assert_eq!(e.path, "[1].header.name", "{e}");
        assert!(
            proxy_core::config::from_yaml::<Vec<HashPolicyConfig>>("- {type: header, name: x}")
                .is_err(),
            "the old type-tagged shape is refused"
        );
    }
}
