//! RDS: a route's `hash_policy` onto proxy-lb's `route_hash` route filter, whose key
//! the ring hash and Maglev clusters of CDS hash on (their `hash_policy: [route]`).

use envoy_types::pb::envoy::config::route::v3::route_action::{
    hash_policy::PolicySpecifier, HashPolicy,
};
use proxy_core::config::TypedConfig;
use serde_json::{json, Value};

use crate::Refusal;

/// The route filter (proxy-lb's) that computes a route's hash key: register it
/// (`proxy_lb::register`) to accept routes with a `hash_policy`.
pub const ROUTE_HASH_FILTER: &str = "route_hash";

/// The `route_hash` filter for `policies`, `None` when none can give a key.
///
/// Mapped: `header` (its first value), `cookie` without `ttl` (Envoy generates a
/// cookie with one: refused, as are `path` and `attributes`, which only go with it),
/// `connection_properties.source_ip` (false: the policy gives no key and is left
/// out), `query_parameter`. `filter_state` and a header `regex_rewrite` are refused.
/// Here the first policy that gives a key decides, which is Envoy's way when every
/// policy but the last is `terminal`; otherwise Envoy combines the keys of several
/// policies, so such a list is refused.
pub(super) fn route_hash(policies: &[HashPolicy]) -> Result<Option<TypedConfig>, Refusal> {
    if let Some(i) = policies
        .iter()
        .take(policies.len().saturating_sub(1))
        .position(|p| !p.terminal)
    {
        return Err(Refusal::new(
            "",
            format!("hash_policy[{i}].terminal"),
            "only terminal policies before the last are supported (Envoy would combine the keys)",
        ));
    }
    let mut sources = Vec::new();
    for (i, p) in policies.iter().enumerate() {
        let at = format!("hash_policy[{i}]");
        if let Some(source) = source(p).map_err(|r| r.within(&at))? {
            sources.push(source);
        }
    }
    if sources.is_empty() {
        return Ok(None);
    }
    TypedConfig::with(ROUTE_HASH_FILTER, &json!({ "hash_policy": sources }))
        .map(Some)
        .map_err(|e| Refusal::new("", "hash_policy", e))
}

fn source(p: &HashPolicy) -> Result<Option<Value>, Refusal> {
    Ok(Some(match &p.policy_specifier {
        None => return Err(Refusal::new("", "policy_specifier", "missing")),
        Some(PolicySpecifier::Header(h)) => {
            if h.regex_rewrite.is_some() {
                return Err(Refusal::new(
                    "",
                    "header.regex_rewrite",
                    "not supported: it would change behaviour",
                ));
            }
            if http::HeaderName::from_bytes(h.header_name.as_bytes()).is_err() {
                return Err(Refusal::new(
                    "",
                    "header.header_name",
                    format!("{:?} is not a header name", h.header_name),
                ));
            }
            json!({"header": {"name": h.header_name.to_ascii_lowercase()}})
        }
        Some(PolicySpecifier::Cookie(c)) => {
            if c.ttl.is_some() {
                return Err(Refusal::new(
                    "",
                    "cookie.ttl",
                    "not supported: cookies are not generated",
                ));
            }
            if !c.path.is_empty() || !c.attributes.is_empty() {
                let field = if c.path.is_empty() {
                    "cookie.attributes"
                } else {
                    "cookie.path"
                };
                return Err(Refusal::new(
                    "",
                    field,
                    "not supported: cookies are not generated",
                ));
            }
            json!({"cookie": {"name": c.name}})
        }
        Some(PolicySpecifier::ConnectionProperties(c)) => {
            if !c.source_ip {
                return Ok(None);
            }
            json!("source_ip")
        }
        Some(PolicySpecifier::QueryParameter(q)) => json!({"query_parameter": {"name": q.name}}),
        Some(PolicySpecifier::FilterState(_)) => {
            return Err(Refusal::new(
                "",
                "filter_state",
                "not supported: there is no filter state",
            ))
        }
    }))
}

#[cfg(test)]
#[path = "route_hash_tests.rs"]
mod tests;
