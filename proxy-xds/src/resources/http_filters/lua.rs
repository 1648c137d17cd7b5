//! `envoy.extensions.filters.http.lua.v3.Lua` onto proxy-filters' `lua`.
//!
//! `default_source_code.inline_string` (or the deprecated `inline_code`) becomes
//! the script's `source`. The script runs with this proxy's Lua API
//! (`on_request(req)`, `on_response(resp)`), not Envoy's: a script defining
//! `envoy_on_request` or `envoy_on_response` is refused rather than loaded and never
//! called. Named `source_codes` (only reachable through `LuaPerRoute`), package
//! paths, filter context and sources other than an inline string are refused by
//! their path. `clear_route_cache` has no counterpart: the route is chosen after
//! the listener's filters ran here, so a changed path or header always routes anew.

use envoy_types::pb::envoy::{
    config::core::v3::DataSource,
    extensions::filters::http::lua::v3::{lua_per_route::Override, Lua, LuaPerRoute},
};
use serde_json::{json, Value};

use super::{super::refuse_leftover, fields};
use crate::Refusal;

/// The type URL of Envoy's Lua filter config.
pub(crate) const TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua";
/// The type URL of its per-route override.
pub(crate) const PER_ROUTE_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute";

/// The `lua` section of an Envoy `Lua` filter config.
pub(crate) fn lua(l: &Lua) -> Result<Value, Refusal> {
    let mut rest = l.clone();
    #[allow(deprecated)]
    rest.inline_code.clear();
    rest.default_source_code = None;
    rest.stat_prefix.clear();
    rest.clear_route_cache = None;
    refuse_leftover(&rest, fields::LUA)?;
    #[allow(deprecated)]
    let (field, source) = match (&l.default_source_code, l.inline_code.as_str()) {
        (Some(d), "") => ("default_source_code.inline_string", inline(d)?),
        (None, code) if !code.is_empty() => ("inline_code", code.to_owned()),
        (Some(_), _) => {
            return Err(Refusal::new(
                "",
                "inline_code",
                "set either inline_code or default_source_code",
            ))
        }
        (None, _) => {
            return Err(Refusal::new(
                "",
                "default_source_code",
                "a script is required",
            ))
        }
    };
    script(field, source)
}

/// A `LuaPerRoute` as the route's `lua` section: `None` when it turns the filter off
/// (`disabled: true`), the inline `source_code` as the script otherwise. Named
/// scripts (`name`, the listener's `source_codes`, refused there), filter context
/// and package paths are refused by their path.
pub(crate) fn per_route(l: &LuaPerRoute) -> Result<Option<Value>, Refusal> {
    let mut rest = l.clone();
    rest.r#override = None;
    refuse_leftover(&rest, fields::LUA_PER_ROUTE)?;
    match &l.r#override {
        Some(Override::Disabled(true)) => Ok(None),
        Some(Override::Disabled(false)) => Err(Refusal::new("", "disabled", "must be true")),
        Some(Override::Name(_)) => Err(Refusal::new(
            "",
            "name",
            "not supported: named source_codes are refused on the listener; give source_code inline",
        )),
        Some(Override::SourceCode(d)) => {
            let source =
                super::inline_text(d).map_err(|e| e.within("source_code"))?;
            script("source_code.inline_string", source).map(Some)
        }
        None => Err(Refusal::new(
            "",
            "override",
            "disabled, name or source_code is required",
        )),
    }
}

/// The `lua` section running `source`, read from field `field`.
fn script(field: &str, source: String) -> Result<Value, Refusal> {
    for envoy_fn in ["envoy_on_request", "envoy_on_response"] {
        if source.contains(envoy_fn) {
            return Err(Refusal::new(
                "",
                field,
                format!(
                    "{envoy_fn} is Envoy's Lua API; scripts here define on_request(req) \
                     and on_response(resp) (see proxy-filters' lua module)"
                ),
            ));
        }
    }
    Ok(json!({ "script": { "source": source } }))
}

fn inline(d: &DataSource) -> Result<String, Refusal> {
    super::inline_text(d).map_err(|e| e.within("default_source_code"))
}
