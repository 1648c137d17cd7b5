//! The seam where capability crates plug in: named factories that turn a config
//! section into an HTTP filter layer or a balancer.

use std::{
    any::Any,
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
};

use crate::{
    cluster::{Balancer, ClusterExtension},
    config::Section,
    connection::ConnLayerFn,
    metrics::RenderMetrics,
    protocol::{ProtocolServer, ProtocolUpstream},
    snapshot::ClusterMap,
    upstream::UpstreamTransport,
    BoxHttp, ConfigError,
};

/// Wraps a request service in a filter.
pub type LayerFn = Arc<dyn Fn(BoxHttp) -> BoxHttp + Send + Sync>;

type Factory<T> = Arc<dyn Fn(&Section, &BuildContext<'_>) -> Result<T, ConfigError> + Send + Sync>;

/// What a factory may use besides its own config section.
pub struct BuildContext<'a> {
    /// The clusters of the snapshot being built: all of them for listener-level
    /// factories (filters, network filters, protocols); empty for cluster-level ones
    /// (balancers, transports, cluster extensions, upstream protocols). Check that a
    /// named cluster exists here at load, and keep the `Arc` to use it at runtime.
    pub clusters: &'a Arc<ClusterMap>,
    /// The listener being built, for listener-level factories.
    pub listener: Option<&'a str>,
    /// The route being built, for a route's own filters (`routes[].filters`): its
    /// name, so that a filter's metrics can tell it from the listener's.
    pub route: Option<&'a str>,
    /// The cluster being built, for cluster-level factories.
    pub cluster: Option<&'a str>,
    /// The config section of the cluster being built, for cluster-level factories
    /// (a transport offers the ALPN of the cluster's `protocol`).
    pub cluster_config: Option<&'a crate::config::ClusterConfig>,
    /// The directory relative paths in the config resolve from (the config file's),
    /// when the config came from a file.
    pub base_dir: Option<&'a std::path::Path>,
    pub(crate) metrics: &'a MetricsStore,
    pub(crate) used: &'a Mutex<Vec<Arc<dyn RenderMetrics>>>,
}

impl fmt::Debug for BuildContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuildContext")
            .field("clusters", &self.clusters.keys().collect::<Vec<_>>())
            .field("listener", &self.listener)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl BuildContext<'_> {
    /// A path named in the config, resolved from the config file's directory when it
    /// is relative (certificates, keys, log files).
    pub fn resolve_path(&self, path: &std::path::Path) -> std::path::PathBuf {
        crate::config::resolve_path(self.base_dir, path)
    }

    /// The metrics object kept under `key`: the same `Arc` on every reload (so
    /// counters survive), made with `T::default()` the first time. Admin
    /// `/stats/prometheus` appends the output of every object the live snapshot asked
    /// for, including objects asked for by the factory of a part kept across a reload.
    /// Objects are rendered one after another, so keep one object per metric family
    /// (e.g. one per crate and concern, labelling clusters inside it) rather than one
    /// per cluster each printing the same `# TYPE` line: Prometheus wants a family's
    /// lines together. Key it by what it measures (`"lb/outlier"`).
    pub fn metrics<T: RenderMetrics + Default>(&self, key: &str) -> Arc<T> {
        let made = self.metrics.get_or_insert::<T>(key);
        if let Ok(mut used) = self.used.lock() {
            crate::snapshot::add_unique(&mut used, [made.clone() as Arc<dyn RenderMetrics>]);
        }
        made
    }
}

/// Metrics objects by key, kept for the life of a [`Registry`] (and so of a server).
#[derive(Default)]
pub(crate) struct MetricsStore {
    entries: Mutex<HashMap<String, Arc<dyn Any + Send + Sync>>>,
}

impl MetricsStore {
    fn get_or_insert<T: RenderMetrics + Default>(&self, key: &str) -> Arc<T> {
        let Ok(mut entries) = self.entries.lock() else {
            return Arc::new(T::default());
        };
        if let Some(found) = entries.get(key).cloned() {
            if let Ok(t) = found.downcast::<T>() {
                return t;
            }
        }
        let made = Arc::new(T::default());
        entries.insert(key.to_owned(), made.clone());
        made
    }
}

/// Named factories for HTTP filters (`http_filters[].typed`), network filters
/// (`network_filters[].typed`) and balancers (`clusters[].lb.typed`). The example binaries register every capability crate's
/// factories here; proxy-core itself registers only `round_robin`.
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use proxy_core::{BoxHttp, Registry};
/// use tower::ServiceBuilder;
///
/// let mut registry = Registry::default();
/// #[derive(serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct AddHeader { value: String }
///
/// registry.register_filter("add_header", |cfg, _ctx| {
///     let AddHeader { value } = cfg.parse()?;
///     let value = http::HeaderValue::from_str(&value)
///         .map_err(|e| proxy_core::ConfigError::new("value", e))?;
///     Ok(Arc::new(move |inner: BoxHttp| {
///         let value = value.clone();
///         BoxHttp::new(ServiceBuilder::new()
///             .map_request(move |mut req: proxy_core::HttpRequest| {
///                 req.headers_mut().insert("x-added", value.clone());
///                 req
///             })
///             .service(inner))
///     }))
/// });
/// assert!(registry.has_filter("add_header"));
/// ```
#[derive(Clone)]
pub struct Registry {
    filters: HashMap<String, Factory<LayerFn>>,
    network_filters: HashMap<String, Factory<ConnLayerFn>>,
    balancers: HashMap<String, Factory<Arc<dyn Balancer>>>,
    cluster_extensions: HashMap<String, Factory<Arc<dyn ClusterExtension>>>,
    transports: HashMap<String, Factory<Arc<dyn UpstreamTransport>>>,
    protocols: Vec<(String, Factory<Arc<dyn ProtocolServer>>)>,
    upstream_protocols: HashMap<String, Factory<Arc<dyn ProtocolUpstream>>>,
    pub(crate) metrics: Arc<MetricsStore>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("filters", &self.filters.keys().collect::<Vec<_>>())
            .field(
                "network_filters",
                &self.network_filters.keys().collect::<Vec<_>>(),
            )
            .field("balancers", &self.balancers.keys().collect::<Vec<_>>())
            .field(
                "cluster_extensions",
                &self.cluster_extensions.keys().collect::<Vec<_>>(),
            )
            .field("transports", &self.transports.keys().collect::<Vec<_>>())
            .field(
                "protocols",
                &self.protocols.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field(
                "upstream_protocols",
                &self.upstream_protocols.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Default for Registry {
    fn default() -> Self {
        let mut r = Self {
            filters: HashMap::new(),
            network_filters: HashMap::new(),
            balancers: HashMap::new(),
            cluster_extensions: HashMap::new(),
            transports: HashMap::new(),
            protocols: Vec::new(),
            upstream_protocols: HashMap::new(),
            metrics: Arc::default(),
        };
        r.register_balancer("round_robin", |_, _| {
            Ok(Arc::new(crate::cluster::RoundRobin::default()))
        });
        r
    }
}

impl Registry {
    /// Registers a filter factory under `name` (`http_filters[].typed`,
    /// `routes[].filters[].typed`). The factory validates its section and returns an
    /// error message (the field and the reason) for a bad one.
    pub fn register_filter<F>(&mut self, name: &str, factory: F)
    where
        F: Fn(&Section, &BuildContext<'_>) -> Result<LayerFn, ConfigError> + Send + Sync + 'static,
    {
        self.filters.insert(name.to_owned(), Arc::new(factory));
    }

    /// Registers a network filter factory under `name` (`network_filters[].typed`):
    /// a layer over the connection stack ([`crate::connection`]).
    pub fn register_network_filter<F>(&mut self, name: &str, factory: F)
    where
        F: Fn(&Section, &BuildContext<'_>) -> Result<ConnLayerFn, ConfigError>
            + Send
            + Sync
            + 'static,
    {
        self.network_filters
            .insert(name.to_owned(), Arc::new(factory));
    }

    /// Registers a balancer factory under `name` (`clusters[].lb.typed`).
    pub fn register_balancer<F>(&mut self, name: &str, factory: F)
    where
        F: Fn(&Section, &BuildContext<'_>) -> Result<Arc<dyn Balancer>, ConfigError>
            + Send
            + Sync
            + 'static,
    {
        self.balancers.insert(name.to_owned(), Arc::new(factory));
    }

    /// Registers a cluster extension factory under `name`
    /// (`clusters[].extensions[].typed`): outlier detection, health checks.
    pub fn register_cluster_extension<F>(&mut self, name: &str, factory: F)
    where
        F: Fn(&Section, &BuildContext<'_>) -> Result<Arc<dyn ClusterExtension>, ConfigError>
            + Send
            + Sync
            + 'static,
    {
        self.cluster_extensions
            .insert(name.to_owned(), Arc::new(factory));
    }

    /// Registers an upstream transport factory under `name`
    /// (`clusters[].transport.typed`): TLS origination.
    pub fn register_transport<F>(&mut self, name: &str, factory: F)
    where
        F: Fn(&Section, &BuildContext<'_>) -> Result<Arc<dyn UpstreamTransport>, ConfigError>
            + Send
            + Sync
            + 'static,
    {
        self.transports.insert(name.to_owned(), Arc::new(factory));
    }

    /// Registers a protocol served on listeners under `name`
    /// (`listeners[].protocol`; `auto` detects every registered protocol, in
    /// registration order). The factory gets `listeners[].protocol_options[name]`.
    pub fn register_protocol<F>(&mut self, name: &str, factory: F)
    where
        F: Fn(&Section, &BuildContext<'_>) -> Result<Arc<dyn ProtocolServer>, ConfigError>
            + Send
            + Sync
            + 'static,
    {
        self.protocols.retain(|(n, _)| n != name);
        self.protocols.push((name.to_owned(), Arc::new(factory)));
    }

    /// Registers a protocol spoken to upstream clusters under `name`
    /// (`clusters[].protocol`). The factory gets `clusters[].protocol_options`.
    pub fn register_upstream_protocol<F>(&mut self, name: &str, factory: F)
    where
        F: Fn(&Section, &BuildContext<'_>) -> Result<Arc<dyn ProtocolUpstream>, ConfigError>
            + Send
            + Sync
            + 'static,
    {
        self.upstream_protocols
            .insert(name.to_owned(), Arc::new(factory));
    }

    /// Whether a filter is registered under `name`.
    pub fn has_filter(&self, name: &str) -> bool {
        self.filters.contains_key(name)
    }

    pub(crate) fn filter(
        &self,
        name: &str,
        cfg: &Section,
        ctx: &BuildContext<'_>,
    ) -> Option<Result<LayerFn, ConfigError>> {
        self.filters.get(name).map(|f| f(cfg, ctx))
    }

    pub(crate) fn network_filter(
        &self,
        name: &str,
        cfg: &Section,
        ctx: &BuildContext<'_>,
    ) -> Option<Result<ConnLayerFn, ConfigError>> {
        self.network_filters.get(name).map(|f| f(cfg, ctx))
    }

    pub(crate) fn balancer(
        &self,
        name: &str,
        cfg: &Section,
        ctx: &BuildContext<'_>,
    ) -> Option<Result<Arc<dyn Balancer>, ConfigError>> {
        self.balancers.get(name).map(|f| f(cfg, ctx))
    }

    pub(crate) fn cluster_extension(
        &self,
        name: &str,
        cfg: &Section,
        ctx: &BuildContext<'_>,
    ) -> Option<Result<Arc<dyn ClusterExtension>, ConfigError>> {
        self.cluster_extensions.get(name).map(|f| f(cfg, ctx))
    }

    pub(crate) fn transport(
        &self,
        name: &str,
        cfg: &Section,
        ctx: &BuildContext<'_>,
    ) -> Option<Result<Arc<dyn UpstreamTransport>, ConfigError>> {
        self.transports.get(name).map(|f| f(cfg, ctx))
    }

    /// The registered listener protocols, in registration order.
    pub(crate) fn protocol_names(&self) -> impl Iterator<Item = &str> {
        self.protocols.iter().map(|(n, _)| n.as_str())
    }

    pub(crate) fn protocol(
        &self,
        name: &str,
        cfg: &Section,
        ctx: &BuildContext<'_>,
    ) -> Option<Result<Arc<dyn ProtocolServer>, ConfigError>> {
        self.protocols
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| f(cfg, ctx))
    }

    pub(crate) fn upstream_protocol(
        &self,
        name: &str,
        cfg: &Section,
        ctx: &BuildContext<'_>,
    ) -> Option<Result<Arc<dyn ProtocolUpstream>, ConfigError>> {
        self.upstream_protocols.get(name).map(|f| f(cfg, ctx))
    }
}
