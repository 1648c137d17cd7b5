//! The route table of one listener.

use std::{fmt, sync::Arc};

use http::{HeaderMap, Method};

use super::{
    host::{HostIndex, HostIndexBuilder},
    matcher::Conditions,
    path_index::{PathIndex, PathIndexBuilder, PathMatch},
    route::Route,
};
use crate::{config::VirtualHostConfig, ConfigError};

/// The validated, indexed routes of one listener; immutable, built once per config
/// snapshot and shared by every request (it is `Send + Sync` and lookups take no lock).
pub struct RouteTable {
    hosts: HostIndex,
    vhosts: Box<[VirtualHost]>,
    /// Whether a route has a condition on `host`, so the request's authority is read
    /// even when every virtual host is `*`.
    reads_host: bool,
}

/// One virtual host: its routes and their conditions, by config index.
#[derive(Debug)]
struct VirtualHost {
    routes: Box<[Arc<Route>]>,
    conditions: Box<[Conditions]>,
    paths: PathIndex,
}

impl RouteTable {
    /// Validates the virtual hosts of a listener and indexes their routes.
    ///
    /// `field_path` is the config path of the listener (e.g. `listeners[0]`); errors name
    /// the full path of the offending field. `cluster_exists` tells whether a cluster
    /// name is defined.
    ///
    /// # Errors
    /// A [`ConfigError`] for the first invalid field: a bad or duplicate domain, a path
    /// not starting with `/`, an invalid or too large regex, method, header name or
    /// value, a `prefix_rewrite` without a prefix match, an invalid `host_rewrite`, an
    /// unknown cluster, or more than 10 retry attempts.
    ///
    /// # Example
    /// ```
    /// use proxy_core::{config::VirtualHostConfig, router::RouteTable};
    ///
    /// let vhosts: Vec<VirtualHostConfig> = serde_json::from_value(serde_json::json!([
    ///     {
    ///         "name": "api",
    ///         "domains": ["api.example.com", "*.api.example.com"],
    ///         "routes": [
    ///             {
    ///                 "name": "users",
    ///                 "match": { "path": { "prefix": "/users/" }, "methods": ["GET"] },
    ///                 "cluster": "users",
    ///                 "prefix_rewrite": "/v2/users/"
    ///             },
    ///             { "match": { "path": { "regex": "/items/[0-9]+" } }, "cluster": "items" }
    ///         ]
    ///     },
    ///     { "name": "fallback", "domains": ["*"], "routes": [{ "match": {}, "cluster": "web" }] }
    /// ]))
    /// .unwrap();
    /// let clusters = ["users", "items", "web"];
    /// let exists = |name: &str| clusters.contains(&name);
    /// let table = RouteTable::build("listeners[0]", &vhosts, &exists).unwrap();
    ///
    /// let headers = http::HeaderMap::new();
    /// let route = table
    ///     .find(Some("API.example.com:8443"), &http::Method::GET, "/users/42", &headers)
    ///     .unwrap();
    /// assert_eq!(&*route.name, "users");
    /// assert_eq!(route.rewrite_path("/users/42?full=1").as_deref(), Some("/v2/users/42?full=1"));
    ///
    /// let route = table.find(Some("eu.api.example.com"), &http::Method::POST, "/items/7", &headers);
    /// assert_eq!(route.map(|r| &*r.name), Some("api/1"));
    ///
    /// let route = table.find(None, &http::Method::GET, "/users/42", &headers).unwrap();
    /// assert_eq!(&*route.cluster, "web");
    ///
    /// // An unknown cluster is refused, naming the field.
    /// let err = RouteTable::build("listeners[0]", &vhosts, &|c: &str| c != "items")
    ///     .unwrap_err();
    /// assert_eq!(err.to_string(), r#"listeners[0].virtual_hosts[0].routes[1].cluster: unknown cluster "items""#);
    /// ```
    pub fn build(
        field_path: &str,
        vhosts: &[VirtualHostConfig],
        cluster_exists: &dyn Fn(&str) -> bool,
    ) -> Result<RouteTable, ConfigError> {
        let mut hosts = HostIndexBuilder::default();
        let mut built = Vec::with_capacity(vhosts.len());
        for (v, cfg) in vhosts.iter().enumerate() {
            let field = format!("{field_path}.virtual_hosts[{v}]");
            let index =
                u32::try_from(v).map_err(|_| ConfigError::new(&field, "too many virtual hosts"))?;
            if cfg.domains.is_empty() {
                return Err(ConfigError::new(
                    format!("{field}.domains"),
                    "at least one domain is required",
                ));
            }
            for (d, domain) in cfg.domains.iter().enumerate() {
                hosts.add(&format!("{field}.domains[{d}]"), domain, index)?;
            }
            built.push(VirtualHost::build(&field, cfg, cluster_exists)?);
        }
        let reads_host = built
            .iter()
            .any(|v: &VirtualHost| v.conditions.iter().any(Conditions::reads_host));
        Ok(RouteTable {
            hosts: hosts.build(),
            vhosts: built.into(),
            reads_host,
        })
    }

    /// The route for a request: the virtual host is chosen by `host` (the Host header or
    /// `:authority`; a port is ignored, case does not matter, `None` only matches `*`),
    /// then the first route of that host, in config order, whose path, method and
    /// header conditions hold. `path` excludes the query string. A header condition on
    /// `host` (or `:authority`) is held against `host` when given, so it sees HTTP/2's
    /// `:authority` as it sees HTTP/1.1's Host.
    ///
    /// Never panics, whatever the input, and takes no lock of its own. It allocates
    /// nothing unless the host is longer than 256 bytes and not lowercase (the regex
    /// engine may grow its reusable match caches on first use).
    pub fn find(
        &self,
        host: Option<&str>,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Option<&Arc<Route>> {
        let vhost = self.vhosts.get(self.hosts.select(host)? as usize)?;
        let conditions = &vhost.conditions;
        let index = vhost.paths.find(path, |i| {
            conditions
                .get(i as usize)
                .is_some_and(|c| c.matches(method, host, headers))
        })?;
        vhost.routes.get(index as usize)
    }

    /// Whether [`RouteTable::find`] gives the same answer whatever the host (the only
    /// domain is `*` and no route has a condition on `host`): the caller need not look
    /// the host up.
    pub(crate) fn host_agnostic(&self) -> bool {
        self.hosts.host_agnostic() && !self.reads_host
    }

    /// All routes, virtual host by virtual host, in config order (for metrics).
    pub fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.vhosts.iter().flat_map(|v| v.routes.iter())
    }

    /// Gives route `route` of virtual host `vhost` (config indexes) its own filters,
    /// the first outermost, around the forwarding of the request.
    pub(crate) fn set_route_filters(
        &self,
        vhost: usize,
        route: usize,
        layers: &[crate::registry::LayerFn],
    ) {
        let Some(r) = self.vhosts.get(vhost).and_then(|v| v.routes.get(route)) else {
            return;
        };
        let terminal = crate::BoxHttp::new(crate::proxy::RouteTerminal);
        let stack = layers.iter().rev().fold(terminal, |svc, layer| layer(svc));
        let _ = r.filters.set(super::route::RouteFilters(stack));
    }

    /// Serves route `route` of virtual host `vhost` (config indexes) with the
    /// listener's route-specific filter stack number `stack` ([`ListenerStacks`]).
    ///
    /// [`ListenerStacks`]: super::ListenerStacks
    pub(crate) fn set_listener_stack(&self, vhost: usize, route: usize, stack: usize) {
        if let Some(r) = self.vhosts.get(vhost).and_then(|v| v.routes.get(route)) {
            let _ = r.listener_stack.set(stack);
        }
    }
}

impl fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteTable")
            .field("virtual_hosts", &self.vhosts.len())
            .field("routes", &self.routes().count())
            .finish()
    }
}

impl VirtualHost {
    fn build(
        field: &str,
        cfg: &VirtualHostConfig,
        cluster_exists: &dyn Fn(&str) -> bool,
    ) -> Result<Self, ConfigError> {
        let name: Arc<str> = cfg.name.as_str().into();
        let mut routes = Vec::with_capacity(cfg.routes.len());
        let mut conditions = Vec::with_capacity(cfg.routes.len());
        let mut paths = PathIndexBuilder::default();
        for (r, route) in cfg.routes.iter().enumerate() {
            let field = format!("{field}.routes[{r}]");
            // `u32::MAX` is the path index's "none found" sentinel.
            let index = u32::try_from(r)
                .ok()
                .filter(|&i| i < u32::MAX)
                .ok_or_else(|| ConfigError::new(&field, "too many routes in one virtual host"))?;
            let match_field = format!("{field}.match");
            let path = PathMatch::build(&match_field, route.matcher.path.as_ref())?;
            conditions.push(Conditions::build(&match_field, &route.matcher)?);
            routes.push(Arc::new(Route::build(
                &field,
                &name,
                r,
                route,
                &path,
                cluster_exists,
            )?));
            paths.add(index, path);
        }
        Ok(Self {
            routes: routes.into(),
            conditions: conditions.into(),
            paths: paths.build(field)?,
        })
    }
}
