//! A validated, immutable config snapshot: what the request path reads, swapped whole.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use crate::{
    cluster::Cluster,
    config::{Config, ListenerConfig},
    connection::ConnLayerFn,
    metrics::{ConnStats, RequestStats},
    registry::{LayerFn, Registry},
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
            let balancer = match registry.balancer(&c.lb.policy, &c.lb.config) {
                None => {
                    return Err(ConfigError::new(
                        format!("{path}.lb.policy"),
                        format!("unknown load-balancing policy {:?}", c.lb.policy),
                    ))
                }
                Some(Err(reason)) => {
                    return Err(ConfigError::new(format!("{path}.lb.config"), reason))
                }
                Some(Ok(b)) => b,
            };
            let old = previous.and_then(|p| p.clusters.get(c.name.as_str()));
            let cluster = Cluster::build(c, balancer, old.map(|c| &**c));
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
            let routes =
                RouteTable::build(&path, &l.virtual_hosts, &|name| clusters.contains_key(name))?;
            let mut layers = Vec::with_capacity(l.http_filters.len());
            for (j, f) in l.http_filters.iter().enumerate() {
                match registry.filter(&f.typed, &f.config) {
                    None => {
                        return Err(ConfigError::new(
                            format!("{path}.http_filters[{j}].typed"),
                            format!("unknown filter {:?}", f.typed),
                        ))
                    }
                    Some(Err(reason)) => {
                        return Err(ConfigError::new(
                            format!("{path}.http_filters[{j}].config"),
                            reason,
                        ))
                    }
                    Some(Ok(layer)) => layers.push(layer),
                }
            }
            let mut conn_layers = Vec::with_capacity(l.network_filters.len());
            for (j, f) in l.network_filters.iter().enumerate() {
                match registry.network_filter(&f.typed, &f.config) {
                    None => {
                        return Err(ConfigError::new(
                            format!("{path}.network_filters[{j}].typed"),
                            format!("unknown network filter {:?}", f.typed),
                        ))
                    }
                    Some(Err(reason)) => {
                        return Err(ConfigError::new(
                            format!("{path}.network_filters[{j}].config"),
                            reason,
                        ))
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
                record_route: config.access_log.is_some(),
            });
            listeners.push(ListenerPlan {
                config: l.clone(),
                routing,
                layers,
                conn_layers,
                conn_stats,
            });
        }
        Ok(Self {
            config: Arc::new(config),
            clusters,
            listeners,
        })
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

fn validate_cluster(c: &crate::config::ClusterConfig, path: &str) -> Result<(), ConfigError> {
    if c.stream_idle_timeout.is_zero() {
        return Err(ConfigError::new(
            format!("{path}.stream_idle_timeout"),
            "must be greater than zero",
        ));
    }
    if c.connect_timeout.is_zero() {
        return Err(ConfigError::new(
            format!("{path}.connect_timeout"),
            "must be greater than zero",
        ));
    }
    if c.pool.max_connections == 0 {
        return Err(ConfigError::new(
            format!("{path}.pool.max_connections"),
            "must be at least 1",
        ));
    }
    if c.pool.max_idle > 1_000_000 {
        return Err(ConfigError::new(
            format!("{path}.pool.max_idle"),
            "must be at most 1000000",
        ));
    }
    if c.pool.idle_timeout.is_zero() {
        return Err(ConfigError::new(
            format!("{path}.pool.idle_timeout"),
            "must be greater than zero",
        ));
    }
    if !(0.0..=1.0).contains(&c.retry_budget.ratio) {
        return Err(ConfigError::new(
            format!("{path}.retry_budget.ratio"),
            "must be between 0 and 1",
        ));
    }
    let mut seen = HashSet::new();
    for (j, e) in c.endpoints.iter().enumerate() {
        if !seen.insert(e.address()) {
            return Err(ConfigError::new(
                format!("{path}.endpoints[{j}]"),
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
