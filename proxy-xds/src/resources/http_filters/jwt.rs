//! `envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication` onto
//! proxy-filters' `jwt_auth`.
//!
//! Envoy verifies what its `rules` require; this proxy's filter requires a valid
//! token for every request it sees. So the one shape mapped is a single rule
//! matching every path (`prefix: "/"`, nothing else) that requires one provider by
//! name (`provider_name`, or `provider_and_audiences`, whose audiences replace the
//! provider's); other rules, requirement maps and combinations are refused by
//! their path. Providers the rule does not name change nothing and are left out.
//!
//! The provider: `issuer` (checked when set), `audiences`, `local_jwks` (an inline
//! JWKS document) or `remote_jwks` (`http_uri.uri` fetched directly, not through
//! `http_uri.cluster`, within `http_uri.timeout`; `cache_duration` as the key set's
//! `max_age`), `from_headers` (a header and its value prefix) and `from_params`
//! (with neither, Envoy's defaults: `Authorization: Bearer` then `access_token`),
//! `claim_to_headers` (top-level claims), `clock_skew_seconds` (Envoy's default
//! 60 s) and `require_expiration`. Every algorithm this proxy verifies is accepted
//! (RS256, ES256, EdDSA), the key's type deciding as in Envoy. `forward` must be
//! true: this proxy passes the token upstream and cannot strip it. Differences:
//! the token's `sub` names the consumer (a token without `sub` is refused here,
//! accepted by Envoy); every failure answers 401 with `www-authenticate` (Envoy
//! answers 403 for an audience not allowed, 401 otherwise).

use envoy_types::pb::envoy::{
    config::route::v3::{route_match::PathSpecifier, RouteMatch},
    extensions::filters::http::jwt_authn::v3::{
        jwt_provider::JwksSourceSpecifier, jwt_requirement::RequiresType,
        per_route_config::RequirementSpecifier, requirement_rule::RequirementType,
        JwtAuthentication, JwtProvider, PerRouteConfig, RemoteJwks, RequirementRule,
    },
};
use serde_json::{json, Value};

use super::{super::duration, super::refuse_leftover, fields};
use crate::Refusal;

/// The type URL of its per-route override.
pub(crate) const PER_ROUTE_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig";

/// A JWT `PerRouteConfig`: `disabled: true` turns the filter off for the route
/// (`Ok(())`); a `requirement_name` is refused, the filter here having one
/// requirement rather than a map of named ones.
pub(crate) fn per_route(p: &PerRouteConfig) -> Result<(), Refusal> {
    match &p.requirement_specifier {
        Some(RequirementSpecifier::Disabled(true)) => Ok(()),
        Some(RequirementSpecifier::Disabled(false)) => {
            Err(Refusal::new("", "disabled", "must be true"))
        }
        Some(RequirementSpecifier::RequirementName(_)) => Err(Refusal::new(
            "",
            "requirement_name",
            "not supported: jwt_auth has one requirement, not a requirement_map",
        )),
        None => Err(Refusal::new(
            "",
            "requirement_specifier",
            "disabled or requirement_name is required",
        )),
    }
}

/// The type URL of Envoy's JWT authentication filter config.
pub(crate) const TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication";

/// The `jwt_auth` section of an Envoy `JwtAuthentication`.
pub(crate) fn jwt_authentication(j: &JwtAuthentication) -> Result<Value, Refusal> {
    let mut rest = j.clone();
    rest.providers.clear();
    rest.rules.clear();
    rest.stat_prefix.clear();
    refuse_leftover(&rest, fields::JWT_AUTHENTICATION)?;
    let (name, audiences) = match j.rules.as_slice() {
        [rule] => requirement(rule).map_err(|e| e.within("rules[0]"))?,
        [] => {
            return Err(Refusal::new(
                "",
                "rules",
                "one rule requiring a provider for every path is required \
                 (this proxy's filter requires a token for every request)",
            ))
        }
        _ => {
            return Err(Refusal::new(
                "",
                "rules[1]",
                "only one rule is supported: set per-route jwt_auth filters instead",
            ))
        }
    };
    let provider = j.providers.get(&name).ok_or_else(|| {
        Refusal::new(
            "",
            "rules[0].requires.provider_name",
            format!("{name:?} is not a provider"),
        )
    })?;
    let mut section =
        provider_section(provider).map_err(|e| e.within(&format!("providers[{name:?}]")))?;
    if let Some(a) = audiences {
        section["audiences"] = json!(a);
    }
    Ok(section)
}

/// The provider a rule requires (and the audiences that replace its own).
fn requirement(r: &RequirementRule) -> Result<(String, Option<Vec<String>>), Refusal> {
    let every_path = RouteMatch {
        path_specifier: Some(PathSpecifier::Prefix("/".into())),
        ..Default::default()
    };
    if r.r#match.as_ref() != Some(&every_path) {
        return Err(Refusal::new(
            "",
            "match",
            "only a match of every path (prefix \"/\" and nothing else) is supported",
        ));
    }
    let requires = match &r.requirement_type {
        Some(RequirementType::Requires(req)) => req,
        Some(RequirementType::RequirementName(_)) => {
            return Err(Refusal::new("", "requirement_name", "not supported"))
        }
        None => return Err(Refusal::new("", "requires", "is required")),
    };
    match &requires.requires_type {
        Some(RequiresType::ProviderName(n)) => Ok((n.clone(), None)),
        Some(RequiresType::ProviderAndAudiences(p)) => {
            Ok((p.provider_name.clone(), Some(p.audiences.clone())))
        }
        _ => Err(Refusal::new(
            "",
            "requires",
            "only provider_name and provider_and_audiences are supported",
        )),
    }
}

fn provider_section(p: &JwtProvider) -> Result<Value, Refusal> {
    let mut rest = p.clone();
    rest.issuer.clear();
    rest.audiences.clear();
    rest.jwks_source_specifier = None;
    rest.forward = false;
    rest.from_headers.clear();
    rest.from_params.clear();
    rest.claim_to_headers.clear();
    rest.clock_skew_seconds = 0;
    rest.require_expiration = false;
    // Caching of verified tokens: no effect on what is accepted.
    rest.jwt_cache_config = None;
    refuse_leftover(&rest, fields::JWT_PROVIDER)?;
    if !p.forward {
        return Err(Refusal::new(
            "",
            "forward",
            "must be true: this proxy passes the token upstream",
        ));
    }
    let jwks = match &p.jwks_source_specifier {
        Some(JwksSourceSpecifier::LocalJwks(d)) => {
            let text = super::inline_text(d).map_err(|e| e.within("local_jwks"))?;
            let doc: Value = serde_json::from_str(&text)
                .map_err(|e| Refusal::new("", "local_jwks", format!("not a JWKS document: {e}")))?;
            json!({ "inline": doc })
        }
        Some(JwksSourceSpecifier::RemoteJwks(r)) => {
            json!({ "remote": remote(r).map_err(|e| e.within("remote_jwks"))? })
        }
        None => return Err(Refusal::new("", "local_jwks", "a key source is required")),
    };
    let mut from = Vec::new();
    for (i, h) in p.from_headers.iter().enumerate() {
        if h.name.is_empty() {
            return Err(Refusal::new(
                "",
                format!("from_headers[{i}].name"),
                "must not be empty",
            ));
        }
        let prefix = (!h.value_prefix.is_empty()).then(|| h.value_prefix.clone());
        from.push(json!({ "header": { "name": h.name.to_ascii_lowercase(), "prefix": prefix } }));
    }
    for q in &p.from_params {
        from.push(json!({ "query": q }));
    }
    if from.is_empty() {
        from.push(json!({ "header": { "name": "authorization", "prefix": "Bearer " } }));
        from.push(json!({ "query": "access_token" }));
    }
    let mut claims = Vec::new();
    for (i, c) in p.claim_to_headers.iter().enumerate() {
        let mut rest = c.clone();
        rest.header_name.clear();
        rest.claim_name.clear();
        refuse_leftover(&rest, fields::CLAIM_TO_HEADER)
            .map_err(|e| e.within(&format!("claim_to_headers[{i}]")))?;
        claims.push(json!({ "claim": c.claim_name, "header": c.header_name.to_ascii_lowercase() }));
    }
    let skew = if p.clock_skew_seconds == 0 {
        60
    } else {
        p.clock_skew_seconds
    };
    let mut section = json!({
        "algorithms": ["RS256", "ES256", "EdDSA"],
        "jwks": jwks,
        "from": from,
        "clock_skew": format!("{skew}s"),
        "require_exp": p.require_expiration,
    });
    if !p.issuer.is_empty() {
        section["issuers"] = json!([p.issuer]);
    }
    if !p.audiences.is_empty() {
        section["audiences"] = json!(p.audiences);
    }
    if !claims.is_empty() {
        section["claims_to_headers"] = json!(claims);
    }
    Ok(section)
}

fn remote(r: &RemoteJwks) -> Result<Value, Refusal> {
    let mut rest = r.clone();
    rest.http_uri = None;
    rest.cache_duration = None;
    refuse_leftover(&rest, fields::REMOTE_JWKS)?;
    let uri = r
        .http_uri
        .as_ref()
        .ok_or_else(|| Refusal::new("", "http_uri", "is required"))?;
    let mut rest = uri.clone();
    rest.uri.clear();
    rest.timeout = None;
    // The URL is fetched directly (see the module's docs).
    rest.http_upstream_type = None;
    refuse_leftover(&rest, fields::HTTP_URI).map_err(|e| e.within("http_uri"))?;
    let mut out = json!({ "url": uri.uri });
    if let Some(t) = &uri.timeout {
        let t = duration(t).map_err(|e| Refusal::new("", "http_uri.timeout", e))?;
        out["timeout"] = json!(super::human(t));
    }
    if let Some(c) = &r.cache_duration {
        let c = duration(c).map_err(|e| Refusal::new("", "cache_duration", e))?;
        out["max_age"] = json!(super::human(c));
    }
    Ok(out)
}
