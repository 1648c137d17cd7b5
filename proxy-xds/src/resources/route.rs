//! RDS: an Envoy `RouteConfiguration` into virtual hosts and routes.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::route::v3::{
    route::Action, virtual_host::TlsRequirementType, RetryPolicy, Route, RouteConfiguration,
    VirtualHost,
};
use proxy_core::config::{RouteConfig, TypedConfig, VirtualHostConfig};

use super::{fields_http as fields, http_filters::PerFilterConfigs, matchers, refuse_leftover};
use crate::Refusal;

pub use super::action::WEIGHTED_CLUSTERS_FILTER;

/// Virtual hosts translated from a `RouteConfiguration` or an inline `route_config`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct XdsRoutes {
    /// The virtual hosts, in order.
    pub virtual_hosts: Vec<VirtualHostConfig>,
    /// Every cluster a route names (weighted ones included).
    pub clusters: BTreeSet<String>,
}

/// Translates an Envoy `RouteConfiguration` into virtual hosts.
///
/// Domains keep their meaning except ports: the proxy ignores the port of the Host
/// header, so `web:8080` is served as `web` (a domain written with and without a
/// port in the same virtual host is kept once; in two virtual hosts it is refused).
/// Routes match on prefix, path, safe_regex and headers; their action is a cluster
/// or weighted clusters (as a route filter of proxy-lb's `traffic_steering`, which
/// must be registered), a timeout (Envoy's 15 s when absent, none when 0),
/// a retry policy, `hash_policy` (as proxy-lb's `route_hash` route filter, whose key
/// ring hash and Maglev clusters hash on), `prefix_rewrite`, `host_rewrite_literal` and header mutations
/// (route, virtual host and route configuration ones merged per route, the most
/// specific applied first as Envoy does). Redirects, direct responses and anything
/// else that would change behaviour are refused, naming the field.
///
/// # Errors
/// A [`Refusal`] naming the route configuration and the field.
///
/// # Example
/// ```
/// use envoy_types::pb::envoy::config::route::v3::{route::Action, route_action::ClusterSpecifier,
///     route_match::PathSpecifier, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost};
///
/// let route = Route {
///     r#match: Some(RouteMatch { path_specifier: Some(PathSpecifier::Prefix("/api".into())), ..Default::default() }),
///     action: Some(Action::Route(RouteAction {
///         cluster_specifier: Some(ClusterSpecifier::Cluster("api".into())), ..Default::default()
///     })),
///     ..Default::default()
/// };
/// let mut rc = RouteConfiguration {
///     name: "web".into(),
///     virtual_hosts: vec![VirtualHost { name: "all".into(), domains: vec!["*".into()], routes: vec![route], ..Default::default() }],
///     ..Default::default()
/// };
/// let routes = proxy_xds::resources::route_configuration(&rc)?;
/// assert_eq!(routes.virtual_hosts[0].routes[0].cluster, "api");
///
/// rc.virtual_hosts[0].routes[0].action = None;
/// let err = proxy_xds::resources::route_configuration(&rc).unwrap_err();
/// assert_eq!(err.to_string(), "route_configuration \"web\": virtual_hosts[0].routes[0].action: a route needs an action");
/// # Ok::<(), proxy_xds::Refusal>(())
/// ```
pub fn route_configuration(rc: &RouteConfiguration) -> Result<XdsRoutes, Refusal> {
    let resource = format!("route_configuration {:?}", rc.name);
    translate(rc).map_err(|r| Refusal { resource, ..r })
}

/// Header mutations of one level (route configuration, virtual host or route).
#[derive(Debug, Clone, Default)]
struct Mutations {
    request_add: Vec<proxy_core::config::HeaderValueConfig>,
    request_remove: Vec<String>,
    response_add: Vec<proxy_core::config::HeaderValueConfig>,
    response_remove: Vec<String>,
}

impl Mutations {
    fn read(
        request_add: &[envoy_types::pb::envoy::config::core::v3::HeaderValueOption],
        request_remove: &[String],
        response_add: &[envoy_types::pb::envoy::config::core::v3::HeaderValueOption],
        response_remove: &[String],
    ) -> Result<Self, Refusal> {
        let names = |field: &str, names: &[String]| {
            for (i, n) in names.iter().enumerate() {
                matchers::header_name(&format!("{field}[{i}]"), n)?;
            }
            Ok::<_, Refusal>(names.to_vec())
        };
        Ok(Self {
            request_add: matchers::headers_to_add("request_headers_to_add", request_add)?,
            request_remove: names("request_headers_to_remove", request_remove)?,
            response_add: matchers::headers_to_add("response_headers_to_add", response_add)?,
            response_remove: names("response_headers_to_remove", response_remove)?,
        })
    }

    /// Adds `outer`'s mutations after these (so an outer overwrite wins, as in Envoy
    /// by default).
    fn then(&self, outer: &Self) -> Self {
        fn cat<T: Clone>(a: &[T], b: &[T]) -> Vec<T> {
            [a, b].concat()
        }
        Self {
            request_add: cat(&self.request_add, &outer.request_add),
            request_remove: cat(&self.request_remove, &outer.request_remove),
            response_add: cat(&self.response_add, &outer.response_add),
            response_remove: cat(&self.response_remove, &outer.response_remove),
        }
    }
}

fn translate(rc: &RouteConfiguration) -> Result<XdsRoutes, Refusal> {
    if rc.name.is_empty() {
        return Err(Refusal::new("", "name", "must not be empty"));
    }
    let mut rest = rc.clone();
    rest.name.clear();
    rest.virtual_hosts.clear();
    rest.request_headers_to_add.clear();
    rest.request_headers_to_remove.clear();
    rest.response_headers_to_add.clear();
    rest.response_headers_to_remove.clear();
    rest.most_specific_header_mutations_wins = false;
    rest.typed_per_filter_config.clear();
    // Without effect here: clusters are never validated (unknown ones answer 503),
    // the port of the Host header is always ignored, metadata feeds no filter.
    rest.validate_clusters = None;
    rest.ignore_port_in_host_matching = false;
    rest.max_direct_response_body_size_bytes = None;
    rest.metadata = None;
    refuse_leftover(&rest, fields::ROUTE_CONFIGURATION)?;
    let global = Mutations::read(
        &rc.request_headers_to_add,
        &rc.request_headers_to_remove,
        &rc.response_headers_to_add,
        &rc.response_headers_to_remove,
    )?;
    let mut out = XdsRoutes {
        virtual_hosts: Vec::new(),
        clusters: BTreeSet::new(),
    };
    let global_filters = super::http_filters::per_filter_configs(&rc.typed_per_filter_config)?;
    let mut domains: BTreeMap<String, usize> = BTreeMap::new();
    for (i, vh) in rc.virtual_hosts.iter().enumerate() {
        let at = format!("virtual_hosts[{i}]");
        let v = virtual_host(
            vh,
            &global,
            &global_filters,
            rc.most_specific_header_mutations_wins,
            &mut out.clusters,
        )
        .map_err(|r| r.within(&at))?;
        for (j, d) in v.domains.iter().enumerate() {
            if let Some(first) = domains.insert(d.to_ascii_lowercase(), i) {
                return Err(Refusal::new(
                    "",
                    format!("{at}.domains[{j}]"),
                    format!("{d:?} (the Host port is ignored) is also a domain of virtual_hosts[{first}]"),
                ));
            }
        }
        out.virtual_hosts.push(v);
    }
    Ok(out)
}

fn virtual_host(
    vh: &VirtualHost,
    global: &Mutations,
    global_filters: &PerFilterConfigs,
    most_specific_wins: bool,
    clusters: &mut BTreeSet<String>,
) -> Result<VirtualHostConfig, Refusal> {
    let mut rest = vh.clone();
    rest.name.clear();
    rest.domains.clear();
    rest.routes.clear();
    rest.request_headers_to_add.clear();
    rest.request_headers_to_remove.clear();
    rest.response_headers_to_add.clear();
    rest.response_headers_to_remove.clear();
    rest.retry_policy = None;
    rest.typed_per_filter_config.clear();
    if rest.require_tls == TlsRequirementType::None as i32 {
        rest.require_tls = 0;
    }
    // Statistics only.
    rest.virtual_clusters.clear();
    rest.metadata = None;
    refuse_leftover(&rest, fields::VIRTUAL_HOST)?;
    let own = Mutations::read(
        &vh.request_headers_to_add,
        &vh.request_headers_to_remove,
        &vh.response_headers_to_add,
        &vh.response_headers_to_remove,
    )?;
    // The route configuration's overrides apply to every virtual host (whose own
    // win); its filters, and the host's, run before each route's.
    let vhost_filters = global_filters.then(super::http_filters::per_filter_configs(
        &vh.typed_per_filter_config,
    )?);
    let mut domains: Vec<String> = Vec::new();
    for (i, d) in vh.domains.iter().enumerate() {
        let host = strip_port(d);
        if host.is_empty() {
            return Err(Refusal::new(
                "",
                format!("domains[{i}]"),
                "must not be empty",
            ));
        }
        if !domains.iter().any(|x| x.eq_ignore_ascii_case(host)) {
            domains.push(host.to_owned());
        }
    }
    let mut routes = Vec::with_capacity(vh.routes.len());
    for (i, r) in vh.routes.iter().enumerate() {
        let at = format!("routes[{i}]");
        let inner = |levels: &Mutations| {
            if most_specific_wins {
                // Outer levels first, so the route's own overwrite wins.
                global.then(&own).then(levels)
            } else {
                levels.then(&own).then(global)
            }
        };
        let route = route(
            r,
            vh.retry_policy.as_ref(),
            &inner,
            &vhost_filters.filters,
            clusters,
        )
        .map_err(|e| e.within(&at))?;
        routes.push(route);
    }
    Ok(VirtualHostConfig {
        name: vh.name.clone(),
        domains,
        routes,
        filter_overrides: vhost_filters.overrides,
    })
}

/// `web:8080` as `web`; `[::1]:80` as `[::1]`; anything else unchanged.
fn strip_port(d: &str) -> &str {
    match d.rsplit_once(':') {
        Some((host, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']')) =>
        {
            host
        }
        _ => d,
    }
}

fn route(
    r: &Route,
    vhost_retry: Option<&RetryPolicy>,
    merge: &dyn Fn(&Mutations) -> Mutations,
    inherited: &[TypedConfig],
    clusters: &mut BTreeSet<String>,
) -> Result<RouteConfig, Refusal> {
    let mut rest = r.clone();
    rest.name.clear();
    rest.r#match = None;
    rest.action = None;
    rest.request_headers_to_add.clear();
    rest.request_headers_to_remove.clear();
    rest.response_headers_to_add.clear();
    rest.response_headers_to_remove.clear();
    // Tracing and statistics only.
    rest.decorator = None;
    rest.tracing = None;
    rest.metadata = None;
    rest.stat_prefix.clear();
    rest.typed_per_filter_config.clear();
    refuse_leftover(&rest, fields::ROUTE)?;
    let own_filters = super::http_filters::per_filter_configs(&r.typed_per_filter_config)?;
    let mut filters = inherited.to_vec();
    filters.extend(own_filters.filters);
    let matcher = matchers::route_match(
        r.r#match
            .as_ref()
            .ok_or_else(|| Refusal::new("", "match", "a route needs a match"))?,
    )
    .map_err(|e| e.within("match"))?;
    let action = match &r.action {
        Some(Action::Route(a)) => a,
        Some(Action::Redirect(_)) => return Err(not_supported("redirect")),
        Some(Action::DirectResponse(_)) => return Err(not_supported("direct_response")),
        Some(Action::FilterAction(_)) => return Err(not_supported("filter_action")),
        Some(Action::NonForwardingAction(_)) => return Err(not_supported("non_forwarding_action")),
        None => return Err(Refusal::new("", "action", "a route needs an action")),
    };
    let own = Mutations::read(
        &r.request_headers_to_add,
        &r.request_headers_to_remove,
        &r.response_headers_to_add,
        &r.response_headers_to_remove,
    )?;
    let m = merge(&own);
    let mut out = RouteConfig {
        name: (!r.name.is_empty()).then(|| r.name.clone()),
        matcher,
        cluster: String::new(),
        timeout: None,
        retry: None,
        prefix_rewrite: None,
        host_rewrite: None,
        request_headers_to_add: m.request_add,
        request_headers_to_remove: m.request_remove,
        response_headers_to_add: m.response_add,
        response_headers_to_remove: m.response_remove,
        filters,
        filter_overrides: own_filters.overrides,
    };
    super::action::route_action(action, vhost_retry, &mut out, clusters)
        .map_err(|e| e.within("route"))?;
    Ok(out)
}

pub(super) fn not_supported(field: &str) -> Refusal {
    Refusal::new("", field, "not supported: it would change behaviour")
}

#[cfg(test)]
#[path = "route_tests.rs"]
mod tests;
