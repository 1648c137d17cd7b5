//! A listener's HTTP filter stacks: the one of routes without `filter_overrides`, and
//! one per distinct set of overrides (a filter off, on, or with another config),
//! built once per snapshot and pointed at by the routes that use them.

use std::collections::{BTreeMap, HashSet};

use crate::{
    config::{FilterOverride, HttpFilterConfig, ListenerConfig, Section},
    registry::{BuildContext, LayerFn, Registry},
    router::{ListenerStacks, RouteTable},
    ConfigError,
};

/// How one listener filter runs on one route.
#[derive(Clone, Copy, PartialEq)]
enum Slot<'a> {
    Off,
    Listener,
    Replaced(&'a Section),
}

/// Validates the filter names and every `filter_overrides` of listener `l` (at
/// `path`), builds its filter stacks and points each overriding route at its stack.
pub(super) fn listener_stacks(
    path: &str,
    l: &ListenerConfig,
    routes: &RouteTable,
    registry: &Registry,
    ctx: &BuildContext<'_>,
) -> Result<ListenerStacks, ConfigError> {
    let filters = &l.http_filters;
    let mut seen = HashSet::with_capacity(filters.len());
    for (j, f) in filters.iter().enumerate() {
        if !seen.insert(f.name()) {
            return Err(ConfigError::new(
                format!("{path}.http_filters[{j}].name"),
                format!(
                    "duplicate filter name {:?} (name one of them with name:)",
                    f.name()
                ),
            ));
        }
    }
    let mut listener_layers = Vec::with_capacity(filters.len());
    for (j, f) in filters.iter().enumerate() {
        listener_layers.push(build(
            &format!("{path}.http_filters[{j}]"),
            f,
            &f.config,
            "config",
            registry,
            ctx,
        )?);
    }
    let defaults: Vec<Slot<'_>> = filters
        .iter()
        .map(|f| {
            if f.disabled {
                Slot::Off
            } else {
                Slot::Listener
            }
        })
        .collect();
    let mut stacks = ListenerStacks {
        default: pick(&defaults, &listener_layers, &[]),
        variants: Vec::new(),
    };
    let mut variant_slots: Vec<Vec<Slot<'_>>> = Vec::new();
    for (v, vhost) in l.virtual_hosts.iter().enumerate() {
        let vhost_at = format!("{path}.virtual_hosts[{v}].filter_overrides");
        check_names(&vhost_at, &vhost.filter_overrides, filters)?;
        for (r, route) in vhost.routes.iter().enumerate() {
            let route_at = format!("{path}.virtual_hosts[{v}].routes[{r}].filter_overrides");
            check_names(&route_at, &route.filter_overrides, filters)?;
            if vhost.filter_overrides.is_empty() && route.filter_overrides.is_empty() {
                continue;
            }
            let mut slots = defaults.clone();
            let mut origin = vec![""; filters.len()];
            for (at, overrides) in [
                (&vhost_at, &vhost.filter_overrides),
                (&route_at, &route.filter_overrides),
            ] {
                for (name, how) in overrides {
                    let Some(j) = filters.iter().position(|f| f.name() == name) else {
                        continue;
                    };
                    slots[j] = match how {
                        FilterOverride::Disabled => Slot::Off,
                        FilterOverride::Enabled => Slot::Listener,
                        FilterOverride::Config(c) => Slot::Replaced(c),
                    };
                    origin[j] = at;
                }
            }
            if slots == defaults {
                continue;
            }
            let index = match variant_slots.iter().position(|s| *s == slots) {
                Some(i) => i,
                None => {
                    let route_name = match &route.name {
                        Some(n) => n.clone(),
                        None => format!("{}/{r}", vhost.name),
                    };
                    let route_ctx = BuildContext {
                        route: Some(&route_name),
                        ..*ctx
                    };
                    let mut replaced = Vec::new();
                    for (j, slot) in slots.iter().enumerate() {
                        if let Slot::Replaced(c) = slot {
                            let f = &filters[j];
                            let at = format!("{}.{}", origin[j], f.name());
                            replaced.push((j, build(&at, f, c, "config", registry, &route_ctx)?));
                        }
                    }
                    stacks
                        .variants
                        .push(pick(&slots, &listener_layers, &replaced));
                    variant_slots.push(slots);
                    variant_slots.len() - 1
                }
            };
            routes.set_listener_stack(v, r, index);
        }
    }
    Ok(stacks)
}

/// Every key of `overrides` (at `at`) names one of `filters`.
fn check_names(
    at: &str,
    overrides: &BTreeMap<String, FilterOverride>,
    filters: &[HttpFilterConfig],
) -> Result<(), ConfigError> {
    for name in overrides.keys() {
        if filters.iter().all(|f| f.name() != name) {
            return Err(ConfigError::new(
                format!("{at}.{name}"),
                "no listener filter of that name",
            ));
        }
    }
    Ok(())
}

/// The filter `f` with config section `config`; `at` is the entry's path and
/// `field` the config's field within it.
fn build(
    at: &str,
    f: &HttpFilterConfig,
    config: &Section,
    field: &str,
    registry: &Registry,
    ctx: &BuildContext<'_>,
) -> Result<LayerFn, ConfigError> {
    match registry.filter(&f.typed, config, ctx) {
        None => Err(ConfigError::new(
            format!("{at}.typed"),
            format!("unknown filter {:?}", f.typed),
        )),
        Some(Err(e)) => Err(e.within(&format!("{at}.{field}"))),
        Some(Ok(layer)) => Ok(layer),
    }
}

/// The layers of a stack, outermost first: the listener's where the slot says so,
/// the replacement built for filter `j` where it is replaced, none where it is off.
fn pick(slots: &[Slot<'_>], listener: &[LayerFn], replaced: &[(usize, LayerFn)]) -> Vec<LayerFn> {
    slots
        .iter()
        .enumerate()
        .filter_map(|(j, slot)| match slot {
            Slot::Off => None,
            Slot::Listener => listener.get(j).cloned(),
            Slot::Replaced(_) => replaced
                .iter()
                .find(|(i, _)| *i == j)
                .map(|(_, l)| l.clone()),
        })
        .collect()
}

#[cfg(test)]
#[path = "overrides_tests.rs"]
mod tests;
