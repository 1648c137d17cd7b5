//! `envoy.extensions.filters.http.rbac.v3.RBAC` onto proxy-filters' `rbac`.
//!
//! Envoy's `rules` (one action for every policy) become ordered policies of that
//! action, sorted by name (the order cannot change the decision: all policies share
//! the action), and `default_action` the opposite one: `ALLOW` rules deny what no
//! policy matches, `DENY` rules allow it. No `rules` allows everything, as in Envoy.
//!
//! Principals: `any`, `authenticated` (with `principal_name`: the mTLS identity, a
//! URI SAN, DNS SAN or the subject, as in Envoy), `source_ip` and `direct_remote_ip`
//! (the downstream peer), `header`, `and_ids`, `or_ids`, `not_id`. Permissions:
//! `any`, `header` (`:method` exact as a method), `url_path` (this proxy matches
//! the normalized path, `/a/../b` as `/b`, where Envoy matches the path as sent:
//! stricter for deny rules, and what a server resolves), `and_rules`, `or_rules`,
//! `not_rule`. Everything else (`remote_ip`: the XFF address; metadata, filter
//! state, ports, SNI, CEL conditions, `LOG`, shadow rules, `matcher`) is refused by
//! its path.

use envoy_types::pb::envoy::{
    config::{
        core::v3::CidrRange,
        rbac::v3::{permission::Rule, principal::Identifier, rbac, Permission, Policy, Principal},
        route::v3::{header_matcher::HeaderMatchSpecifier, HeaderMatcher},
    },
    extensions::filters::http::rbac::v3::{Rbac, RbacPerRoute},
    r#type::matcher::v3::path_matcher,
};
use serde_json::{json, Value};

use super::{super::matchers, super::refuse_leftover, fields, to_json};
use crate::Refusal;

/// The type URL of Envoy's HTTP RBAC filter config.
pub(crate) const TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
/// The type URL of its per-route override.
pub(crate) const PER_ROUTE_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute";

/// An `RBACPerRoute` as the route's `rbac` section: its `rbac` mapped as the
/// listener's, or `None` when absent (Envoy: the global policy is disabled for the
/// route).
pub(crate) fn per_route(r: &RbacPerRoute) -> Result<Option<Value>, Refusal> {
    r.rbac
        .as_ref()
        .map(|r| rbac(r).map_err(|e| e.within("rbac")))
        .transpose()
}

/// The `rbac` section of an Envoy `RBAC` filter config.
pub(crate) fn rbac(r: &Rbac) -> Result<Value, Refusal> {
    let mut rest = r.clone();
    rest.rules = None;
    // Statistics only.
    rest.rules_stat_prefix.clear();
    rest.shadow_rules_stat_prefix.clear();
    rest.track_per_rule_stats = false;
    refuse_leftover(&rest, fields::RBAC_FILTER)?;
    let Some(rules) = &r.rules else {
        return Ok(json!({ "policies": [], "default_action": "allow" }));
    };
    let mut rest = rules.clone();
    rest.action = 0;
    rest.policies.clear();
    refuse_leftover(&rest, fields::RBAC_RULES).map_err(|e| e.within("rules"))?;
    let (action, default) = match rbac::Action::try_from(rules.action) {
        Ok(rbac::Action::Allow) => ("allow", "deny"),
        Ok(rbac::Action::Deny) => ("deny", "allow"),
        _ => {
            return Err(Refusal::new(
                "",
                "rules.action",
                "only ALLOW and DENY are supported",
            ))
        }
    };
    let mut names: Vec<&String> = rules.policies.keys().collect();
    names.sort();
    let mut policies = Vec::with_capacity(names.len());
    for name in names {
        let at = format!("rules.policies[{name:?}]");
        let p = &rules.policies[name];
        policies.push(policy(name, action, p).map_err(|e| e.within(&at))?);
    }
    Ok(json!({ "policies": policies, "default_action": default }))
}

fn policy(name: &str, action: &str, p: &Policy) -> Result<Value, Refusal> {
    let mut rest = p.clone();
    rest.permissions.clear();
    rest.principals.clear();
    refuse_leftover(&rest, fields::RBAC_POLICY)?;
    let principals = p
        .principals
        .iter()
        .enumerate()
        .map(|(i, x)| principal(x).map_err(|e| e.within(&format!("principals[{i}]"))))
        .collect::<Result<Vec<_>, _>>()?;
    let permissions = p
        .permissions
        .iter()
        .enumerate()
        .map(|(i, x)| permission(x).map_err(|e| e.within(&format!("permissions[{i}]"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({
        "name": name,
        "action": action,
        "principals": principals,
        "permissions": permissions,
    }))
}

fn principal(p: &Principal) -> Result<Value, Refusal> {
    let list = |field: &str, ids: &[Principal]| {
        ids.iter()
            .enumerate()
            .map(|(i, x)| principal(x).map_err(|e| e.within(&format!("{field}.ids[{i}]"))))
            .collect::<Result<Vec<_>, _>>()
    };
    #[allow(deprecated)]
    Ok(match &p.identifier {
        None => return Err(Refusal::new("", "identifier", "is required")),
        Some(Identifier::Any(true)) => json!({ "any": true }),
        Some(Identifier::Any(false)) => {
            return Err(Refusal::new("", "any", "must be true when set"))
        }
        Some(Identifier::AndIds(s)) => json!({ "and": list("and_ids", &s.ids)? }),
        Some(Identifier::OrIds(s)) => json!({ "or": list("or_ids", &s.ids)? }),
        Some(Identifier::NotId(inner)) => {
            json!({ "not": principal(inner).map_err(|e| e.within("not_id"))? })
        }
        Some(Identifier::Authenticated(a)) => {
            let mut rest = a.clone();
            rest.principal_name = None;
            refuse_leftover(&rest, &[(2, "principal_name")])
                .map_err(|e| e.within("authenticated"))?;
            match &a.principal_name {
                None => json!({ "authenticated": true }),
                Some(m) => json!({ "identity": to_json(&matchers::string_match(m)
                    .map_err(|e| e.within("authenticated.principal_name"))?) }),
            }
        }
        Some(Identifier::SourceIp(c)) => json!({ "source_ip": cidr(c, "source_ip")? }),
        Some(Identifier::DirectRemoteIp(c)) => {
            json!({ "source_ip": cidr(c, "direct_remote_ip")? })
        }
        Some(Identifier::Header(h)) => header(h)?,
        Some(Identifier::RemoteIp(_)) => return Err(unsupported("remote_ip")),
        Some(Identifier::UrlPath(_)) => return Err(unsupported("url_path")),
        Some(Identifier::Metadata(_)) => return Err(unsupported("metadata")),
        Some(Identifier::FilterState(_)) => return Err(unsupported("filter_state")),
        Some(Identifier::SourcedMetadata(_)) => return Err(unsupported("sourced_metadata")),
        Some(Identifier::Custom(_)) => return Err(unsupported("custom")),
    })
}

#[allow(deprecated)]
fn permission(p: &Permission) -> Result<Value, Refusal> {
    let list = |field: &str, rules: &[Permission]| {
        rules
            .iter()
            .enumerate()
            .map(|(i, x)| permission(x).map_err(|e| e.within(&format!("{field}.rules[{i}]"))))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(match &p.rule {
        None => return Err(Refusal::new("", "rule", "is required")),
        Some(Rule::Any(true)) => json!({ "any": true }),
        Some(Rule::Any(false)) => return Err(Refusal::new("", "any", "must be true when set")),
        Some(Rule::AndRules(s)) => json!({ "and": list("and_rules", &s.rules)? }),
        Some(Rule::OrRules(s)) => json!({ "or": list("or_rules", &s.rules)? }),
        Some(Rule::NotRule(inner)) => {
            json!({ "not": permission(inner).map_err(|e| e.within("not_rule"))? })
        }
        Some(Rule::Header(h)) if h.name == ":method" => method(h)?,
        Some(Rule::Header(h)) => header(h)?,
        Some(Rule::UrlPath(m)) => match &m.rule {
            Some(path_matcher::Rule::Path(s)) => json!({ "path": to_json(
                &matchers::string_match(s).map_err(|e| e.within("url_path.path"))?) }),
            None => return Err(Refusal::new("", "url_path.path", "is required")),
        },
        Some(Rule::DestinationIp(_)) => return Err(unsupported("destination_ip")),
        Some(Rule::DestinationPort(_)) => return Err(unsupported("destination_port")),
        Some(Rule::DestinationPortRange(_)) => return Err(unsupported("destination_port_range")),
        Some(Rule::Metadata(_)) => return Err(unsupported("metadata")),
        Some(Rule::RequestedServerName(_)) => return Err(unsupported("requested_server_name")),
        Some(Rule::Matcher(_)) => return Err(unsupported("matcher")),
        Some(Rule::UriTemplate(_)) => return Err(unsupported("uri_template")),
        Some(Rule::SourcedMetadata(_)) => return Err(unsupported("sourced_metadata")),
    })
}

/// A header matcher as one condition, or `and` of the conditions it needs.
fn header(h: &HeaderMatcher) -> Result<Value, Refusal> {
    let mut conds = matchers::header_match(h).map_err(|e| e.within("header"))?;
    Ok(if conds.len() == 1 {
        json!({ "header": to_json(&conds.remove(0)) })
    } else {
        let all: Vec<Value> = conds
            .iter()
            .map(|c| json!({ "header": to_json(c) }))
            .collect();
        json!({ "and": all })
    })
}

/// `:method` exact (not inverted) as a method permission.
fn method(h: &HeaderMatcher) -> Result<Value, Refusal> {
    #[allow(deprecated)]
    let exact = match &h.header_match_specifier {
        Some(HeaderMatchSpecifier::ExactMatch(m)) => Some(m),
        Some(HeaderMatchSpecifier::StringMatch(s)) if !s.ignore_case => match &s.match_pattern {
            Some(
                envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern::Exact(m),
            ) => Some(m),
            _ => None,
        },
        _ => None,
    };
    match exact {
        Some(m) if !h.invert_match && !m.is_empty() => {
            let condition = json!({ "method": [m] });
            Ok(condition)
        }
        _ => Err(Refusal::new(
            "",
            "header",
            "a :method matcher must be an exact match, not inverted",
        )),
    }
}

fn cidr(c: &CidrRange, field: &str) -> Result<String, Refusal> {
    let ip: std::net::IpAddr = c.address_prefix.parse().map_err(|_| {
        Refusal::new(
            "",
            format!("{field}.address_prefix"),
            format!("{:?} is not an IP address", c.address_prefix),
        )
    })?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = c.prefix_len.as_ref().map_or(max, |l| l.value);
    if len > max {
        return Err(Refusal::new(
            "",
            format!("{field}.prefix_len"),
            format!("{len} is more than {max}"),
        ));
    }
    Ok(format!("{ip}/{len}"))
}

fn unsupported(field: &str) -> Refusal {
    Refusal::new("", field, "not supported: it would change behaviour")
}
