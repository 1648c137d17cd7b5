//! A validated, immutable config snapshot: what the request path reads, swapped whole.

mod overrides;
mod parts;
mod validate;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use crate::{
    cluster::Cluster,
    config::{Config, ListenerConfig},
    connection::ConnLayerFn,
    metrics::{ConnStats, RenderMetrics, RequestStats},
    protocol::ProtocolServer,
    registry::{BuildContext, LayerFn, Registry},
    router::RouteTable,
    ConfigError,
};

use parts::{build_route_filters, cluster_parts, listener_protocols};
pub(crate) use validate::validate_cluster;
use validate::{listener_via, validate_limits, validate_runtime};

/// Clusters by name.
///
/// Looked up on every request, so hashed with a fast hasher rather than SipHash:
/// the names come from config, never from the network, so there is no flood of
/// chosen keys to resist. Build one with `ClusterMap::default()` or `collect()`.
pub type ClusterMap = HashMap<Arc<str>, Arc<Cluster>, rustc_hash::FxBuildHasher>;

/// What a listener's request path reads per request.
#[derive(Debug)]
pub struct Routing {
    /// The listener's routes.
    pub routes: RouteTable,
    /// All clusters.
    pub clusters: Arc<ClusterMap>,
    /// Whether to set `x-forwarded-for` / `x-forwarded-proto`.
    pub xff: bool,
    /// The `Via` entry added to requests sent upstream and to their answers (the
    /// listener's `via`), if any; a request that already carries it is refused.
    pub via: Option<crate::proxy::Via>,
    /// Which request bodies are read whole before they go upstream, and how fast the
    /// others must arrive (the listener's `request_body_buffer`, within its
    /// `header_read_timeout`, and `request_body_min_rate`).
    pub body_buffer: crate::proxy::BodyBuffer,
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
        // The top-level access log's format and path, checked as a run makes them
        // (which opens nothing and starts nothing).
        let counts = Arc::new(crate::access_log::LineCounts::default());
        crate::access_log::AccessLog::from_config(&config, counts)?;
        let used_metrics = Mutex::new(Vec::new());
        let no_clusters = Arc::new(ClusterMap::default());
        let mut clusters = ClusterMap::default();
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
            let workers = crate::upstream::worker_count(&config.runtime);
            let mut cluster = Cluster::build(c, parts, old.map(|c| &**c), workers);
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
            let via = listener_via(l, &path)?;
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
            let stacks = overrides::listener_stacks(&path, l, &routes, registry, &ctx)?;
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
                via,
                body_buffer: crate::proxy::BodyBuffer::new(
                    l.limits.request_body_buffer.get(),
                    l.limits.header_read_timeout,
                )
                .with_min_rate(l.limits.request_body_min_rate.get()),
                stats,
                // For access logs: the core's, or a filter's (filters see the response
                // extensions; a listener with filters boxes its stack anyway).
                record_route: config.access_log.is_some()
                    || !l.http_filters.is_empty()
                    || l.virtual_hosts
                        .iter()
                        .any(|v| v.routes.iter().any(|r| !r.filters.is_empty())),
            });
            let layers = stacks.into_layers(routing.clone());
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
