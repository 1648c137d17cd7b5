//! The seam where capability crates plug in: named factories that turn a config
//! section into an HTTP filter layer or a balancer.

use std::{collections::HashMap, fmt, sync::Arc};

use crate::{cluster::Balancer, connection::ConnLayerFn, BoxHttp};

/// Wraps a request service in a filter.
pub type LayerFn = Arc<dyn Fn(BoxHttp) -> BoxHttp + Send + Sync>;

type FilterFactory = Arc<dyn Fn(&serde_yaml::Value) -> Result<LayerFn, String> + Send + Sync>;
type NetworkFilterFactory =
    Arc<dyn Fn(&serde_yaml::Value) -> Result<ConnLayerFn, String> + Send + Sync>;
type BalancerFactory =
    Arc<dyn Fn(&serde_yaml::Value) -> Result<Arc<dyn Balancer>, String> + Send + Sync>;

/// Named factories for HTTP filters (`http_filters[].typed`), network filters
/// (`network_filters[].typed`) and balancers (`clusters[].lb.policy`). The example binaries register every capability crate's
/// factories here; proxy-core itself registers only `round_robin`.
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use proxy_core::{BoxHttp, Registry};
/// use tower::ServiceBuilder;
///
/// let mut registry = Registry::default();
/// registry.register_filter("add_header", |cfg| {
///     let value = cfg["value"].as_str().ok_or("value: expected a string")?.to_owned();
///     let value = http::HeaderValue::from_str(&value).map_err(|e| format!("value: {e}"))?;
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
    filters: HashMap<String, FilterFactory>,
    network_filters: HashMap<String, NetworkFilterFactory>,
    balancers: HashMap<String, BalancerFactory>,
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
            .finish()
    }
}

impl Default for Registry {
    fn default() -> Self {
        let mut r = Self {
            filters: HashMap::new(),
            network_filters: HashMap::new(),
            balancers: HashMap::new(),
        };
        r.register_balancer("round_robin", |_| {
            Ok(Arc::new(crate::cluster::RoundRobin::default()))
        });
        r
    }
}

impl Registry {
    /// Registers a filter factory under `name`. The factory validates its section and
    /// returns an error message (the field and the reason) for a bad one.
    pub fn register_filter<F>(&mut self, name: &str, factory: F)
    where
        F: Fn(&serde_yaml::Value) -> Result<LayerFn, String> + Send + Sync + 'static,
    {
        self.filters.insert(name.to_owned(), Arc::new(factory));
    }

    /// Registers a network filter factory under `name` (`network_filters[].typed`):
    /// a layer over the connection stack ([`crate::connection`]).
    pub fn register_network_filter<F>(&mut self, name: &str, factory: F)
    where
        F: Fn(&serde_yaml::Value) -> Result<ConnLayerFn, String> + Send + Sync + 'static,
    {
        self.network_filters
            .insert(name.to_owned(), Arc::new(factory));
    }

    /// Registers a balancer factory under `name`.
    pub fn register_balancer<F>(&mut self, name: &str, factory: F)
    where
        F: Fn(&serde_yaml::Value) -> Result<Arc<dyn Balancer>, String> + Send + Sync + 'static,
    {
        self.balancers.insert(name.to_owned(), Arc::new(factory));
    }

    /// Whether a filter is registered under `name`.
    pub fn has_filter(&self, name: &str) -> bool {
        self.filters.contains_key(name)
    }

    pub(crate) fn filter(
        &self,
        name: &str,
        cfg: &serde_yaml::Value,
    ) -> Option<Result<LayerFn, String>> {
        self.filters.get(name).map(|f| f(cfg))
    }

    pub(crate) fn network_filter(
        &self,
        name: &str,
        cfg: &serde_yaml::Value,
    ) -> Option<Result<ConnLayerFn, String>> {
        self.network_filters.get(name).map(|f| f(cfg))
    }

    pub(crate) fn balancer(
        &self,
        name: &str,
        cfg: &serde_yaml::Value,
    ) -> Option<Result<Arc<dyn Balancer>, String>> {
        self.balancers.get(name).map(|f| f(cfg))
    }
}
