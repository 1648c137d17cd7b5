//! RBAC rules and their evaluation over the facts of one request: pure and
//! synchronous (property-tested without a runtime).

use std::net::IpAddr;

use http::{HeaderMap, Method};
use serde::{Deserialize, Serialize};

use crate::matcher::{Cidr, HeaderMatch, StringMatch};

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Let the request through.
    Allow,
    /// Answer 403.
    Deny,
}

/// One policy: it matches a request when any principal and any permission match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Names the policy in logs.
    pub name: String,
    /// What a match decides.
    pub action: Action,
    /// Who: any of these.
    pub principals: Vec<Principal>,
    /// What: any of these.
    pub permissions: Vec<Permission>,
}

/// Who sends the request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Principal {
    /// `any: true` matches everyone.
    Any(bool),
    /// The downstream peer address is in this range.
    SourceIp(Cidr),
    /// The peer presented a verified TLS certificate (mTLS) when `true`; did not when `false`.
    Authenticated(bool),
    /// The mTLS peer identity: any URI SAN, DNS SAN or the subject matches.
    Identity(StringMatch),
    /// A request header matches.
    Header(HeaderMatch),
    /// All of these match.
    And(Vec<Principal>),
    /// Any of these matches.
    Or(Vec<Principal>),
    /// This does not match.
    Not(Box<Principal>),
}

/// What the request asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Permission {
    /// `any: true` matches every request.
    Any(bool),
    /// The host (authority without port).
    Host(StringMatch),
    /// The path (without the query), normalized ([`crate::matcher::normalize_path`]).
    Path(StringMatch),
    /// The method is one of these.
    Method(Vec<MethodName>),
    /// A request header matches.
    Header(HeaderMatch),
    /// The RPC interface (gRPC, Bolt, Dubbo), as the codec reports it:
    /// `rpc: {service: {exact: com.shop.Orders}, method: {prefix: get}}`.
    Rpc(RpcMatch),
    /// All of these match.
    And(Vec<Permission>),
    /// Any of these matches.
    Or(Vec<Permission>),
    /// This does not match.
    Not(Box<Permission>),
}

pub use proxy_core::matcher::RpcMatch;

/// An HTTP method name, checked at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodName(pub Method);

impl Serialize for MethodName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for MethodName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Method::from_bytes(s.as_bytes())
            .map(Self)
            .map_err(|_| serde::de::Error::custom(format!("{s:?} is not a valid method")))
    }
}

/// The mTLS peer identity of a request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Identity<'a> {
    /// The certificate subject.
    pub subject: Option<&'a str>,
    /// URI SANs (SPIFFE ids).
    pub uri_sans: &'a [String],
    /// DNS SANs.
    pub dns_sans: &'a [String],
}

/// What rules look at.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The downstream peer IP.
    pub peer: Option<IpAddr>,
    /// The verified mTLS peer, if any.
    pub identity: Option<Identity<'a>>,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// The authority the request's target names (HTTP/2's `:authority`), which a
    /// header condition on `host` sees in place of the Host field.
    pub authority: Option<&'a str>,
    /// The host without port.
    pub host: Option<&'a str>,
    /// The path without query.
    pub path: &'a str,
    /// The method.
    pub method: &'a Method,
    /// RPC service and method.
    pub rpc: Option<(&'a str, &'a str)>,
}

impl Principal {
    /// Whether the request's sender matches.
    pub fn matches(&self, f: &Facts<'_>) -> bool {
        match self {
            Self::Any(b) => *b,
            Self::SourceIp(c) => f.peer.is_some_and(|ip| c.contains(ip)),
            Self::Authenticated(b) => f.identity.is_some() == *b,
            Self::Identity(m) => f.identity.is_some_and(|id| {
                id.uri_sans.iter().any(|s| m.matches(s))
                    || id.dns_sans.iter().any(|s| m.matches(s))
                    || id.subject.is_some_and(|s| m.matches(s))
            }),
            Self::Header(h) => h.matches_request(f.headers, f.authority),
            Self::And(all) => all.iter().all(|p| p.matches(f)),
            Self::Or(any) => any.iter().any(|p| p.matches(f)),
            Self::Not(p) => !p.matches(f),
        }
    }
}

impl Permission {
    /// Whether the request matches.
    pub fn matches(&self, f: &Facts<'_>) -> bool {
        match self {
            Self::Any(b) => *b,
            Self::Host(m) => f.host.is_some_and(|h| m.matches(h)),
            Self::Path(m) => m.matches(f.path),
            Self::Method(list) => list.iter().any(|m| m.0 == *f.method),
            Self::Header(h) => h.matches_request(f.headers, f.authority),
            Self::Rpc(m) => f.rpc.is_some_and(|(s, me)| m.matches(s, me)),
            Self::And(all) => all.iter().all(|p| p.matches(f)),
            Self::Or(any) => any.iter().any(|p| p.matches(f)),
            Self::Not(p) => !p.matches(f),
        }
    }
}

impl Policy {
    /// Whether the policy applies to the request.
    pub fn matches(&self, f: &Facts<'_>) -> bool {
        self.principals.iter().any(|p| p.matches(f))
            && self.permissions.iter().any(|p| p.matches(f))
    }
}

/// Refuses what deserializes but cannot mean anything, naming the field from `path`
/// (`policies[0].permissions[1].and[0].rpc`).
pub(crate) fn check_permission(p: &Permission, path: &str) -> Result<(), crate::ConfigError> {
    match p {
        Permission::Rpc(r) if r.service.is_none() && r.method.is_none() => Err(
            crate::ConfigError::invalid(format!("{path}.rpc"), "give a service, a method or both"),
        ),
        Permission::And(list) => check_all(list, &format!("{path}.and")),
        Permission::Or(list) => check_all(list, &format!("{path}.or")),
        Permission::Not(q) => check_permission(q, &format!("{path}.not")),
        _ => Ok(()),
    }
}

fn check_all(list: &[Permission], path: &str) -> Result<(), crate::ConfigError> {
    list.iter()
        .enumerate()
        .try_for_each(|(i, q)| check_permission(q, &format!("{path}[{i}]")))
}

/// The outcome of evaluating policies: the action and the policy that decided
/// (`None` when the default action applied).
pub fn evaluate<'p>(
    policies: &'p [Policy],
    default: Action,
    f: &Facts<'_>,
) -> (Action, Option<&'p str>) {
    policies
        .iter()
        .find(|p| p.matches(f))
        .map_or((default, None), |p| (p.action, Some(p.name.as_str())))
}
