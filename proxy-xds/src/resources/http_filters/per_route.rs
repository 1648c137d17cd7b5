//! `typed_per_filter_config` of a route, virtual host or route configuration, keyed by
//! an HCM HTTP filter's name, onto the config model: this proxy's own filters (a
//! `TypedStruct`) become route `filters`, run after the listener's; Envoy's per-route
//! overrides become `filter_overrides` of the listener filter of that name.
//!
//! | per-route config | becomes |
//! |---|---|
//! | `TypedStruct` naming our filter (bare or in a `FilterConfig`) | a route filter |
//! | `FilterConfig { disabled: true }` | `disabled` |
//! | `FilterConfig {}` (no config) | `enabled` (a filter `disabled` in the HCM runs here) |
//! | `RBACPerRoute { rbac }` | `{config: <rbac mapped as the listener's>}`; no `rbac`: `disabled` |
//! | `LuaPerRoute { disabled: true }` / `{ source_code }` | `disabled` / `{config: {script}}` |
//! | JWT `PerRouteConfig { disabled: true }` | `disabled` |
//!
//! Refused, by field: `LuaPerRoute.name` (named scripts), JWT `requirement_name`,
//! other types unless the `FilterConfig` is `is_optional` (then left out, as in
//! Envoy). A route configuration may serve listeners with different filters: as in
//! Envoy, an override naming no filter of the listener the routes are joined to is
//! left out there ([`keep_overrides_of_its_filters`]).

use std::collections::{BTreeMap, HashMap};

use envoy_types::pb::{envoy::config::route::v3::FilterConfig, google::protobuf::Any};
use proxy_core::config::{FilterOverride, ListenerConfig, Section, TypedConfig};

use super::{decode, fields, jwt, lua, rbac, refuse_leftover, typed_struct};
use crate::Refusal;

/// The type URL of `envoy.config.route.v3.FilterConfig`, a per-route wrapper.
const FILTER_CONFIG_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.FilterConfig";

/// One level's `typed_per_filter_config`, mapped.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct PerFilterConfigs {
    /// Our own filters, in key order: appended to the route's `filters`.
    pub(crate) filters: Vec<TypedConfig>,
    /// Overrides of the listener's filters by name.
    pub(crate) overrides: BTreeMap<String, FilterOverride>,
}

impl PerFilterConfigs {
    /// `self` with `inner`'s (a more specific level's) added: filters after, and
    /// overrides of the same filter replaced.
    pub(crate) fn then(&self, inner: Self) -> Self {
        let mut out = self.clone();
        out.filters.extend(inner.filters);
        out.overrides.extend(inner.overrides);
        out
    }
}

/// Leaves out the `filter_overrides` of `listener`'s routes and virtual hosts that
/// name none of its HTTP filters (Envoy looks per-route configs up by the names of
/// the connection manager's filters, so others are never used).
pub(crate) fn keep_overrides_of_its_filters(listener: &mut ListenerConfig) {
    let names: Vec<String> = listener
        .http_filters
        .iter()
        .map(|f| f.name().to_owned())
        .collect();
    let keep = |overrides: &mut BTreeMap<String, FilterOverride>| {
        overrides.retain(|name, _| {
            let known = names.contains(name);
            if !known {
                tracing::debug!(filter = %name, "xds: per-route config of a filter this listener does not have left out");
            }
            known
        });
    };
    for vhost in &mut listener.virtual_hosts {
        keep(&mut vhost.filter_overrides);
        for route in &mut vhost.routes {
            keep(&mut route.filter_overrides);
        }
    }
}

/// What one entry maps to.
enum PerRoute {
    Filter(TypedConfig),
    Override(FilterOverride),
    LeftOut,
}

/// A `typed_per_filter_config` mapped, by key order; a refusal names
/// `typed_per_filter_config["KEY"]` and the field within.
pub(crate) fn per_filter_configs(map: &HashMap<String, Any>) -> Result<PerFilterConfigs, Refusal> {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    let mut out = PerFilterConfigs::default();
    for key in keys {
        let at = format!("typed_per_filter_config[{key:?}]");
        match per_route(&map[key]).map_err(|e| e.within(&at))? {
            PerRoute::Filter(f) => out.filters.push(f),
            PerRoute::Override(o) => {
                out.overrides.insert(key.clone(), o);
            }
            PerRoute::LeftOut => {}
        }
    }
    Ok(out)
}

fn per_route(any: &Any) -> Result<PerRoute, Refusal> {
    let (any, optional, at) = if any.type_url == FILTER_CONFIG_TYPE {
        let fc: FilterConfig = decode(any, FILTER_CONFIG_TYPE, "")?;
        let mut rest = fc.clone();
        rest.config = None;
        rest.is_optional = false;
        rest.disabled = false;
        refuse_leftover(&rest, fields::FILTER_CONFIG)?;
        if fc.disabled {
            // Envoy ignores the config of a disabled filter.
            return Ok(PerRoute::Override(FilterOverride::Disabled));
        }
        let Some(inner) = fc.config else {
            return Ok(PerRoute::Override(FilterOverride::Enabled));
        };
        (inner, fc.is_optional, "config.")
    } else {
        (any.clone(), false, "")
    };
    if let Some(own) =
        typed_struct::own_filter(&any).map_err(|e| e.within(at.trim_end_matches('.')))?
    {
        return Ok(PerRoute::Filter(own));
    }
    let within = |e: Refusal| e.within(at.trim_end_matches('.'));
    let replace = |v: Option<serde_json::Value>| {
        PerRoute::Override(match v {
            None => FilterOverride::Disabled,
            Some(v) => FilterOverride::Config(Section::from_value(v)),
        })
    };
    match any.type_url.as_str() {
        rbac::PER_ROUTE_TYPE => {
            let r = decode(&any, rbac::PER_ROUTE_TYPE, "").map_err(within)?;
            rbac::per_route(&r).map(replace).map_err(within)
        }
        lua::PER_ROUTE_TYPE => {
            let l = decode(&any, lua::PER_ROUTE_TYPE, "").map_err(within)?;
            lua::per_route(&l).map(replace).map_err(within)
        }
        jwt::PER_ROUTE_TYPE => {
            let j = decode(&any, jwt::PER_ROUTE_TYPE, "").map_err(within)?;
            jwt::per_route(&j).map_err(within)?;
            Ok(PerRoute::Override(FilterOverride::Disabled))
        }
        _ if optional => Ok(PerRoute::LeftOut),
        other => Err(Refusal::new(
            "",
            format!("{at}type_url"),
            format!(
                "{other:?} is not supported per route (a TypedStruct naming a filter, \
                 FilterConfig, RBACPerRoute, LuaPerRoute or the JWT PerRouteConfig)"
            ),
        )),
    }
}
