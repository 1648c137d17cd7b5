//! HTTP filters of an `HttpConnectionManager` and per-route filter configs into the
//! config model's `{typed, config}` entries.
//!
//! | type URL | our filter |
//! |---|---|
//! | `xds.type.v3.TypedStruct`, `udpa.type.v1.TypedStruct` | the one its `type_url` names ([`super::typed_struct`]) |
//! | `envoy.extensions.filters.http.rbac.v3.RBAC` | `rbac` ([`rbac`]) |
//! | `envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit` | `local_rate_limit` ([`local_ratelimit`]) |
//! | `envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication` | `jwt_auth` ([`jwt`]) |
//! | `envoy.extensions.filters.http.lua.v3.Lua` | `lua` ([`lua`]) |
//! | `envoy.extensions.filters.http.fault.v3.HTTPFault` | `fault` ([`fault`]) |

mod fault;
mod fields;
mod jwt;
mod local_ratelimit;
mod lua;
mod rbac;

use std::{collections::HashMap, time::Duration};

use envoy_types::pb::{
    envoy::config::{
        core::v3::{data_source::Specifier, DataSource},
        route::v3::FilterConfig,
    },
    google::protobuf::Any,
};
use proxy_core::config::{Section, TypedConfig};

use super::{decode, refuse_leftover, typed_struct};
use crate::Refusal;

/// The type URL of `envoy.config.route.v3.FilterConfig`, a per-route wrapper.
const FILTER_CONFIG_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.FilterConfig";

/// The filter an HCM `http_filters` entry's `typed_config` names, or `None` when it
/// enforces nothing (a local rate limit at 0%). A refusal's path is relative to the
/// `typed_config`; an unknown type is refused at `type_url`.
pub(crate) fn http_filter(any: &Any) -> Result<Option<TypedConfig>, Refusal> {
    if let Some(own) = typed_struct::own_filter(any)? {
        return Ok(Some(own));
    }
    let entry = |name: &str, v: serde_json::Value| TypedConfig {
        typed: name.to_owned(),
        config: Section::from_value(v),
    };
    Ok(match any.type_url.as_str() {
        rbac::TYPE => Some(entry("rbac", rbac::rbac(&decode(any, rbac::TYPE, "")?)?)),
        local_ratelimit::TYPE => {
            local_ratelimit::local_rate_limit(&decode(any, local_ratelimit::TYPE, "")?)?
                .map(|v| entry("local_rate_limit", v))
        }
        jwt::TYPE => Some(entry(
            "jwt_auth",
            jwt::jwt_authentication(&decode(any, jwt::TYPE, "")?)?,
        )),
        lua::TYPE => Some(entry("lua", lua::lua(&decode(any, lua::TYPE, "")?)?)),
        fault::TYPE => Some(entry(
            "fault",
            fault::fault(&decode(any, fault::TYPE, "")?)?,
        )),
        other => {
            return Err(Refusal::new(
                "",
                "type_url",
                format!("{other:?} is not a filter this proxy implements"),
            ))
        }
    })
}

/// A route's, virtual host's or route configuration's `typed_per_filter_config` as
/// route filters, by key order. Only this proxy's own filters (a `TypedStruct`,
/// bare or in a `FilterConfig`) are accepted: they run after the listener's filters,
/// for that route only. Envoy's per-route overrides (`RBACPerRoute`,
/// `LuaPerRoute`, `FilterConfig.disabled`) replace or turn off a listener filter,
/// which this proxy's model cannot express: they are refused. An optional
/// (`is_optional`) `FilterConfig` of an unknown type is left out, as in Envoy.
pub(crate) fn per_route_filters(map: &HashMap<String, Any>) -> Result<Vec<TypedConfig>, Refusal> {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    let mut out = Vec::new();
    for key in keys {
        let at = format!("typed_per_filter_config[{key:?}]");
        if let Some(f) = per_route(&map[key]).map_err(|e| e.within(&at))? {
            out.push(f);
        }
    }
    Ok(out)
}

fn per_route(any: &Any) -> Result<Option<TypedConfig>, Refusal> {
    let (any, optional, at) = if any.type_url == FILTER_CONFIG_TYPE {
        let fc: FilterConfig = decode(any, FILTER_CONFIG_TYPE, "")?;
        let mut rest = fc.clone();
        rest.config = None;
        rest.is_optional = false;
        rest.disabled = false;
        refuse_leftover(&rest, fields::FILTER_CONFIG)?;
        if fc.disabled {
            return Err(Refusal::new(
                "",
                "disabled",
                "not supported: a listener filter cannot be turned off for one route here",
            ));
        }
        let inner = fc
            .config
            .ok_or_else(|| Refusal::new("", "config", "is required"))?;
        (inner, fc.is_optional, "config.")
    } else {
        (any.clone(), false, "")
    };
    if let Some(own) =
        typed_struct::own_filter(&any).map_err(|e| e.within(at.trim_end_matches('.')))?
    {
        return Ok(Some(own));
    }
    match any.type_url.as_str() {
        rbac::PER_ROUTE_TYPE | lua::PER_ROUTE_TYPE => Err(Refusal::new(
            "",
            format!("{at}type_url"),
            format!(
                "{:?} replaces the listener's filter in Envoy; routes here add filters \
                 after the listener's: name one with a TypedStruct",
                any.type_url
            ),
        )),
        _ if optional => Ok(None),
        other => Err(Refusal::new(
            "",
            format!("{at}type_url"),
            format!("{other:?} is not supported per route (only a TypedStruct naming a filter)"),
        )),
    }
}

/// The text of a `DataSource` given inline (`inline_string` or UTF-8
/// `inline_bytes`); files and environment variables are refused.
fn inline_text(d: &DataSource) -> Result<String, Refusal> {
    let mut rest = d.clone();
    rest.specifier = None;
    refuse_leftover(&rest, fields::DATA_SOURCE)?;
    match &d.specifier {
        Some(Specifier::InlineString(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Specifier::InlineBytes(b)) if !b.is_empty() => String::from_utf8(b.clone())
            .map_err(|_| Refusal::new("", "inline_bytes", "is not UTF-8")),
        Some(Specifier::Filename(_)) => Err(Refusal::new(
            "",
            "filename",
            "not supported: the data comes inline",
        )),
        Some(Specifier::EnvironmentVariable(_)) => Err(Refusal::new(
            "",
            "environment_variable",
            "not supported: the data comes inline",
        )),
        _ => Err(Refusal::new("", "inline_string", "is required")),
    }
}

/// A duration as the config model writes it (`1500ms`, `250ns`).
pub(crate) fn human(d: Duration) -> String {
    if d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}ns", d.as_nanos())
    }
}

/// A config-model value as JSON (proxy-core's matchers are plain serde data).
fn to_json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
#[path = "../http_filters_tests.rs"]
mod tests;
