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
    config::core::v3::DataSource, extensions::filters::http::lua::v3::Lua,
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
