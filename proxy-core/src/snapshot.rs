//! A validated, immutable config snapshot: what the request path reads, swapped whole.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use crate::{
    cluster::{Cluster, ClusterExtension, ClusterParts},
    config::{
        ClusterConfig, Config, ListenerConfig, ListenerProtocol, TypedConfig, UpstreamProtocol,
    },
    connection::ConnLayerFn,
    metrics::{ConnStats, RenderMetrics, RequestStats},
    protocol::ProtocolServer,
    registry::{BuildContext, LayerFn, Registry},
    router::RouteTable,
    ConfigError,
};

/// Clusters by name.
pub type ClusterMap = HashMap<Arc<str>, Arc<Cluster>>;

/// What a listener's request path reads per request.
#[derive(Debug)]
pub struct Routing {
    /// The listener's routes.
    pub routes: RouteTable,
    /// All clusters.
    pub clusters: Arc<ClusterMap>,
    /// Whether to set `x-forwarded-for` / `x-forwarded-proto`.
    pub xff: bool,
    /// Request stats of the listener (kept across reloads).
    pub stats: Arc<RequestStats>,
    /// Put the matched route in the response extensions ([`crate::proxy::MatchedRoute`]),
    /// for the access log.
    pub record_route: bool,
}

/// A listener's part of a snapshot.
pub(crate) struct ListenerPlan {
    pub(crate) config: ListenerConfig,
    pub(crate) routing: Arc<Routing>,
    pub(crate) layers: Vec<LayerFn>,
    pub(crate) conn_layers: Vec<ConnLayerFn>,
    pub(crate) conn_stats: Arc<ConnStats>,
    /// The registered protocols this listener serves: the one it names, or all of
    /// them (in registration order) for `auto`.
    pub(crate) protocols: Arc<[Arc<dyn ProtocolServer>]>,
}

impl std::fmt::Debug for ListenerPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerPlan")
            .field("name", &self.config.name)
            .finish_non_exhaustive()
    }
}

/// A validated config, turned into runtime objects.
#[derive(Debug)]
pub struct Snapshot {
    /// The config this snapshot was built from.
    pub config: Arc<Config>,
    /// All clusters.
    pub clusters: Arc<ClusterMap>,
    pub(crate) listeners: Vec<ListenerPlan>,
    /// Metrics of capability crates used by this snapshot.
    pub(crate) extra_metrics: ExtraMetrics,
}

/// Metrics objects of capability crates.
#[derive(Clone, Default)]
pub(crate) struct ExtraMetrics(pub(crate) Vec<Arc<dyn RenderMetrics>>);

/// Appends the objects of `more` not yet in `to`.
pub(crate) fn add_unique(
    to: &mut Vec<Arc<dyn RenderMetrics>>,
    more: impl IntoIterator<Item = Arc<dyn RenderMetrics>>,
) {
    for m in more {
        if !to.iter().any(|t| Arc::ptr_eq(t, &m)) {
            to.push(m);
        }
    }
}

impl std::fmt::Debug for ExtraMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExtraMetrics({})", self.0.len())
    }
}

impl Snapshot {
    /// Validates `config` whole and builds the runtime objects, reusing the endpoints,
    /// connection pools and stats of `previous` where they are unchanged.
    ///
    /// # Errors
    /// The first problem found, naming its field path.
    pub fn build(
        config: Config,
        registry: &Registry,
        previous: Option<&Snapshot>,
    ) -> Result<Self, ConfigError> {
        validate_runtime(&config)?;
        let used_metrics = Mutex::new(Vec::new());
        let no_clusters = Arc::new(ClusterMap::new());
        let mut clusters = ClusterMap::new();
        for (i, c) in config.clusters.iter().enumerate() {
            let path = format!("clusters[{i}]");
            if c.name.is_empty() {
                return Err(ConfigError::new(
                    format!("{path}.name"),
                    "must not be empty",
                ));
            }
            if clusters.contains_key(c.name.as_str()) {
                return Err(ConfigError::new(
                    format!("{path}.name"),
                    format!("duplicate cluster name {:?}", c.name),
                ));
            }
            validate_cluster(c, &path)?;
            let cluster_metrics = Mutex::new(Vec::new());
            let ctx = BuildContext {
                clusters: &no_clusters,
                listener: None,
                route: None,
                cluster: Some(&c.name),
                cluster_config: Some(c),
                base_dir: config.base_dir.as_deref(),
                metrics: &registry.metrics,
                used: &cluster_metrics,
            };
            let old = previous.and_then(|p| p.clusters.get(c.name.as_str()));
            let parts = cluster_parts(c, &path, registry, &ctx, old.map(|c| &**c))?;
            // Parts kept from the old cluster made no new metrics request: keep what
            // their factories asked for, so their series stay on the admin page.
            let mut metrics = cluster_metrics.into_inner().unwrap_or_default();
            if let Some(o) = old {
                add_unique(&mut metrics, o.metrics.0.iter().cloned());
            }
            if let Ok(mut used) = used_metrics.lock() {
                add_unique(&mut used, metrics.iter().cloned());
            }
            let mut cluster = Cluster::build(c, parts, old.map(|c| &**c));
            cluster.metrics = ExtraMetrics(metrics);
            clusters.insert(c.name.as_str().into(), Arc::new(cluster));
        }
        let clusters = Arc::new(clusters);

        let mut names = HashSet::new();
        let mut addresses = HashSet::new();
        let mut listeners = Vec::with_capacity(config.listeners.len());
        for (i, l) in config.listeners.iter().enumerate() {
            let path = format!("listeners[{i}]");
            if l.name.is_empty() || !names.insert(l.name.as_str()) {
                return Err(ConfigError::new(
                    format!("{path}.name"),
                    format!("empty or duplicate listener name {:?}", l.name),
                ));
            }
            // Port 0 asks the system for a free port, so several may share it.
            let any_port =
                matches!(l.address, crate::config::ListenAddress::Tcp(a) if a.port() == 0);
            if !any_port && !addresses.insert(&l.address) {
                return Err(ConfigError::new(
                    format!("{path}.address"),
                    format!("{} is used by another listener", l.address),
                ));
            }
            validate_limits(l, &path)?;
            let ctx = BuildContext {
                clusters: &clusters,
                listener: Some(&l.name),
                route: None,
                cluster: None,
                cluster_config: None,
                base_dir: config.base_dir.as_deref(),
                metrics: &registry.metrics,
                used: &used_metrics,
            };
            let routes =
                RouteTable::build(&path, &l.virtual_hosts, &|name| clusters.contains_key(name))?;
            build_route_filters(&path, l, &routes, registry, &ctx)?;
            let layers = filter_layers(
                &format!("{path}.http_filters"),
                &l.http_filters,
                registry,
                &ctx,
            )?;
            let protocols = listener_protocols(&path, l, registry, &ctx)?;
            let mut conn_layers = Vec::with_capacity(l.network_filters.len());
            for (j, f) in l.network_filters.iter().enumerate() {
                match registry.network_filter(&f.typed, &f.config, &ctx) {
                    None => {
                        return Err(ConfigError::new(
                            format!("{path}.network_filters[{j}].typed"),
                            format!("unknown network filter {:?}", f.typed),
                        ))
                    }
                    Some(Err(e)) => {
                        return Err(e.within(&format!("{path}.network_filters[{j}].config")))
                    }
                    Some(Ok(layer)) => conn_layers.push(layer),
                }
            }
            let old = previous.and_then(|p| p.listeners.iter().find(|o| o.config.name == l.name));
            let stats = old.map_or_else(Arc::default, |o| o.routing.stats.clone());
            let conn_stats = old.map_or_else(Arc::default, |o| o.conn_stats.clone());
            if let Some(old) = old {
                carry_route_stats(&old.routing.routes, &routes);
            }
            let routing = Arc::new(Routing {
                routes,
                clusters: clusters.clone(),
                xff: l.xff,
                stats,
                // For access logs: the core's, or a filter's (filters see the response
                // extensions; a listener with filters boxes its stack anyway).
                record_route: config.access_log.is_some()
                    || !l.http_filters.is_empty()
                    || l.virtual_hosts
                        .iter()
                        .any(|v| v.routes.iter().any(|r| !r.filters.is_empty())),
            });
            listeners.push(ListenerPlan {
                config: l.clone(),
                routing,
                layers,
                conn_layers,
                conn_stats,
                protocols,
            });
        }
        Ok(Self {
            config: Arc::new(config),
            clusters,
            listeners,
            extra_metrics: ExtraMetrics(used_metrics.into_inner().unwrap_or_default()),
        })
    }

    /// Activates the cluster extensions: the snapshot went live. Called within the
    /// server's runtime.
    pub(crate) fn activate(&self) {
        for c in self.clusters.values() {
            c.activate();
        }
    }

    /// Appends the metrics of capability crates to `out`.
    pub(crate) fn render_extra_metrics(&self, out: &mut String) {
        for m in &self.extra_metrics.0 {
            m.render(out);
        }
    }

    /// The routing of listener `name`.
    pub fn routing(&self, name: &str) -> Option<&Arc<Routing>> {
        self.listeners
            .iter()
            .find(|l| l.config.name == name)
            .map(|l| &l.routing)
    }

    /// The connection stats of listener `name`.
    pub fn listener_conn_stats(&self, name: &str) -> Option<&Arc<ConnStats>> {
        self.listeners
            .iter()
            .find(|l| l.config.name == name)
            .map(|l| &l.conn_stats)
    }
}

/// Route stats are per route name; a reload keeps the counters of routes it keeps.
fn carry_route_stats(old: &RouteTable, new: &RouteTable) {
    // Route stats live in `Arc`s owned by each route; counters of a renamed or removed
    // route start afresh. Copy the counts so that Prometheus counters never go back.
    let by_name: HashMap<&str, &Arc<crate::router::Route>> =
        old.routes().map(|r| (&*r.name, r)).collect();
    for r in new.routes() {
        if let Some(o) = by_name.get(&*r.name) {
            r.stats.absorb(&o.stats);
        }
    }
}

fn validate_runtime(config: &Config) -> Result<(), ConfigError> {
    if config.runtime.worker_threads > 1024 {
        return Err(ConfigError::new(
            "runtime.worker_threads",
            "must be at most 1024",
        ));
    }
    if config.listeners.is_empty() {
        return Err(ConfigError::new(
            "listeners",
            "at least one listener is required",
        ));
    }
    Ok(())
}

pub(crate) fn validate_cluster(
    c: &crate::config::ClusterConfig,
    path: &str,
) -> Result<(), ConfigError> {
    if c.stream_idle_timeout.is_zero() {
        return Err(ConfigError::new(
            crate::config::section::join(path, "stream_idle_timeout"),
            "must be greater than zero",
        ));
    }
    if c.connect_timeout.is_zero() {
        return Err(ConfigError::new(
            crate::config::section::join(path, "connect_timeout"),
            "must be greater than zero",
        ));
    }
    if c.pool.max_connections == 0 {
        return Err(ConfigError::new(
            crate::config::section::join(path, "pool.max_connections"),
            "must be at least 1",
        ));
    }
    if c.pool.max_idle > 1_000_000 {
        return Err(ConfigError::new(
            crate::config::section::join(path, "pool.max_idle"),
            "must be at most 1000000",
        ));
    }
    if c.pool.idle_timeout.is_zero() {
        return Err(ConfigError::new(
            crate::config::section::join(path, "pool.idle_timeout"),
            "must be greater than zero",
        ));
    }
    let mut seen = HashSet::new();
    for (j, e) in c.endpoints.iter().enumerate() {
        if !seen.insert(e.address()) {
            return Err(ConfigError::new(
                crate::config::section::join(path, &format!("endpoints[{j}]")),
                format!("duplicate endpoint {}", e.address()),
            ));
        }
    }
    Ok(())
}

fn validate_limits(l: &ListenerConfig, path: &str) -> Result<(), ConfigError> {
    let lim = &l.limits;
    let max_headers = crate::http1::head::MAX_HEADERS as u32;
    if lim.max_headers == 0 || lim.max_headers > max_headers {
        return Err(ConfigError::new(
            format!("{path}.limits.max_headers"),
            format!("must be between 1 and {max_headers}"),
        ));
    }
    if !(1024..=1024 * 1024).contains(&lim.max_header_bytes) {
        return Err(ConfigError::new(
            format!("{path}.limits.max_header_bytes"),
            "must be between 1024 and 1048576",
        ));
    }
    if lim.max_connections == 0 {
        return Err(ConfigError::new(
            format!("{path}.limits.max_connections"),
            "must be at least 1",
        ));
    }
    if lim.header_read_timeout.is_zero()
        || lim.idle_timeout.is_zero()
        || lim.stream_idle_timeout.is_zero()
    {
        return Err(ConfigError::new(
            format!("{path}.limits"),
            "timeouts must be greater than zero",
        ));
    }
    if lim.h2_max_concurrent_streams == 0 {
        return Err(ConfigError::new(
            format!("{path}.limits.h2_max_concurrent_streams"),
            "must be at least 1",
        ));
    }
    Ok(())
}

/// The balancer, extensions, transport and protocol of a cluster: kept from the
/// previous cluster of that name when their config sections are unchanged (so their
/// state survives a reload), else made by the registered factories.
fn cluster_parts(
    c: &ClusterConfig,
    path: &str,
    registry: &Registry,
    ctx: &BuildContext<'_>,
    old: Option<&Cluster>,
) -> Result<ClusterParts, ConfigError> {
    let balancer = match old.filter(|o| o.config.lb == c.lb) {
        Some(o) => o.balancer.clone(),
        None => match registry.balancer(&c.lb.typed, &c.lb.config, ctx) {
            None => {
                return Err(ConfigError::new(
                    format!("{path}.lb.typed"),
                    format!("unknown load-balancing policy {:?}", c.lb.typed),
                ))
            }
            Some(Err(e)) => return Err(e.within(&format!("{path}.lb.config"))),
            Some(Ok(b)) => b,
        },
    };
    let extensions: Arc<[Arc<dyn ClusterExtension>]> = match old
        .filter(|o| o.config.extensions == c.extensions)
    {
        Some(o) => o.extensions.clone(),
        None => {
            let mut v = Vec::with_capacity(c.extensions.len());
            for (j, x) in c.extensions.iter().enumerate() {
                match registry.cluster_extension(&x.typed, &x.config, ctx) {
                    None => {
                        return Err(ConfigError::new(
                            format!("{path}.extensions[{j}].typed"),
                            format!("unknown cluster extension {:?}", x.typed),
                        ))
                    }
                    Some(Err(e)) => return Err(e.within(&format!("{path}.extensions[{j}].config"))),
                    Some(Ok(e)) => v.push(e),
                }
            }
            v.into()
        }
    };
    let transport = match (
        &c.transport,
        old.filter(|o| o.config.transport == c.transport),
    ) {
        (None, _) => None,
        (Some(_), Some(o)) => o.transport.clone(),
        (Some(t), None) => match registry.transport(&t.typed, &t.config, ctx) {
            None => {
                return Err(ConfigError::new(
                    format!("{path}.transport.typed"),
                    format!("unknown transport {:?}", t.typed),
                ))
            }
            Some(Err(e)) => return Err(e.within(&format!("{path}.transport.config"))),
            Some(Ok(t)) => Some(t),
        },
    };
    let same_protocol = |o: &&Cluster| {
        o.config.protocol == c.protocol && o.config.protocol_options == c.protocol_options
    };
    let protocol = match (&c.protocol, old.filter(same_protocol)) {
        (UpstreamProtocol::Named(_), Some(o)) => o.protocol.clone(),
        (UpstreamProtocol::Named(name), None) => {
            match registry.upstream_protocol(name, &c.protocol_options, ctx) {
                None => {
                    return Err(ConfigError::new(
                        format!("{path}.protocol"),
                        format!("unknown upstream protocol {name:?}"),
                    ))
                }
                Some(Err(e)) => return Err(e.within(&format!("{path}.protocol_options"))),
                Some(Ok(p)) => Some(p),
            }
        }
        _ => None,
    };
    Ok(ClusterParts {
        balancer,
        extensions,
        transport,
        protocol,
    })
}

/// Builds filters from their config sections at `path`, outermost first.
fn filter_layers(
    path: &str,
    filters: &[TypedConfig],
    registry: &Registry,
    ctx: &BuildContext<'_>,
) -> Result<Vec<LayerFn>, ConfigError> {
    let mut layers = Vec::with_capacity(filters.len());
    for (j, f) in filters.iter().enumerate() {
        match registry.filter(&f.typed, &f.config, ctx) {
            None => {
                return Err(ConfigError::new(
                    format!("{path}[{j}].typed"),
                    format!("unknown filter {:?}", f.typed),
                ))
            }
            Some(Err(e)) => return Err(e.within(&format!("{path}[{j}].config"))),
            Some(Ok(layer)) => layers.push(layer),
        }
    }
    Ok(layers)
}

/// Builds each route's own filter stack (`routes[].filters`).
fn build_route_filters(
    path: &str,
    l: &ListenerConfig,
    routes: &RouteTable,
    registry: &Registry,
    ctx: &BuildContext<'_>,
) -> Result<(), ConfigError> {
    for (v, vhost) in l.virtual_hosts.iter().enumerate() {
        for (r, route) in vhost.routes.iter().enumerate() {
            if route.filters.is_empty() {
                continue;
            }
            let at = format!("{path}.virtual_hosts[{v}].routes[{r}].filters");
            let name = match &route.name {
                Some(n) => n.clone(),
                None => format!("{}/{r}", vhost.name),
            };
            let route_ctx = BuildContext {
                route: Some(&name),
                ..*ctx
            };
            let layers = filter_layers(&at, &route.filters, registry, &route_ctx)?;
            routes.set_route_filters(v, r, &layers);
        }
    }
    Ok(())
}

/// The registered protocols a listener serves.
fn listener_protocols(
    path: &str,
    l: &ListenerConfig,
    registry: &Registry,
    ctx: &BuildContext<'_>,
) -> Result<Arc<[Arc<dyn ProtocolServer>]>, ConfigError> {
    for name in l.protocol_options.keys() {
        if registry.protocol_names().all(|n| n != name) {
            return Err(ConfigError::new(
                format!("{path}.protocol_options.{name}"),
                format!("unknown protocol {name:?}"),
            ));
        }
    }
    let names: Vec<String> = match &l.protocol {
        ListenerProtocol::Named(name) => {
            if registry.protocol_names().all(|n| n != &**name) {
                return Err(ConfigError::new(
                    format!("{path}.protocol"),
                    format!("unknown protocol {name:?}"),
                ));
            }
            vec![name.to_string()]
        }
        ListenerProtocol::Auto => registry.protocol_names().map(str::to_owned).collect(),
        ListenerProtocol::Http1 | ListenerProtocol::Http2 => Vec::new(),
    };
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let cfg = l.protocol_options.get(&name).cloned().unwrap_or_default();
        match registry.protocol(&name, &cfg, ctx) {
            Some(Ok(p)) => out.push(p),
            Some(Err(e)) => return Err(e.within(&format!("{path}.protocol_options.{name}"))),
            None => {}
        }
    }
    Ok(out.into())
}
