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
//!
//! Per-route configs (`typed_per_filter_config`) become route filters or
//! `filter_overrides` of the listener's filters ([`per_route`]).

mod fault;
mod fields;
mod jwt;
mod local_ratelimit;
mod lua;
mod per_route;
mod rbac;

pub(crate) use per_route::{keep_overrides_of_its_filters, per_filter_configs, PerFilterConfigs};

use std::time::Duration;

use envoy_types::pb::{
    envoy::config::core::v3::{data_source::Specifier, DataSource},
    google::protobuf::Any,
};
use proxy_core::config::{Section, TypedConfig};

use super::{decode, refuse_leftover, typed_struct};
use crate::Refusal;

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

#[cfg(test)]
#[path = "../http_filters_override_tests.rs"]
mod override_tests;
