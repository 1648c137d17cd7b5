//! Building a cluster in code, without a config file.

use std::{net::SocketAddr, num::NonZeroU32, sync::Arc, time::Duration};

use super::{Balancer, Cluster, ClusterExtension, ClusterParts, RoundRobin};
use crate::{
    config::{
        ClusterConfig, EndpointConfig, PoolConfig, RetryBudgetConfig, Section, TypedConfig,
        UpstreamProtocol,
    },
    protocol::ProtocolUpstream,
    upstream::UpstreamTransport,
    ConfigError,
};

/// Builds a [`Cluster`] from code: endpoints, a balancer, the upstream protocol and
/// transport, extensions. What the config's `clusters[]` section and the registry
/// produce, without either.
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use proxy_core::cluster::{Cluster, RoundRobin};
///
/// let cluster = Cluster::builder("users")
///     .endpoint("127.0.0.1:8080".parse().unwrap())
///     .weighted_endpoint("127.0.0.1:8081".parse().unwrap(), 3.try_into().unwrap(), [("zone", "z1")])
///     .balancer(Arc::new(RoundRobin::default()))
///     .connect_timeout(std::time::Duration::from_millis(500))
///     .build()
///     .unwrap();
/// assert_eq!(cluster.endpoints.len(), 2);
/// assert_eq!(cluster.endpoints[1].label("zone"), Some("z1"));
/// assert!(Cluster::builder("").build().is_err());
/// ```
#[derive(Debug)]
#[must_use]
pub struct ClusterBuilder {
    config: ClusterConfig,
    balancer: Option<Arc<dyn Balancer>>,
    extensions: Vec<Arc<dyn ClusterExtension>>,
    transport: Option<Arc<dyn UpstreamTransport>>,
    protocol: Option<Arc<dyn ProtocolUpstream>>,
}

impl Cluster {
    /// A builder for a cluster named `name` (see [`ClusterBuilder`]).
    pub fn builder(name: impl Into<String>) -> ClusterBuilder {
        ClusterBuilder {
            config: ClusterConfig {
                name: name.into(),
                protocol: UpstreamProtocol::Http1,
                endpoints: Vec::new(),
                connect_timeout: Duration::from_secs(2),
                stream_idle_timeout: Duration::from_secs(60),
                pool: PoolConfig::default(),
                lb: TypedConfig::named("code"),
                retry_budget: RetryBudgetConfig::default(),
                circuit_breakers: Default::default(),
                protocol_options: Section::empty(),
                transport: None,
                extensions: Vec::new(),
            },
            balancer: None,
            extensions: Vec::new(),
            transport: None,
            protocol: None,
        }
    }
}

impl ClusterBuilder {
    /// Adds an endpoint of weight 1.
    pub fn endpoint(mut self, address: SocketAddr) -> Self {
        self.config.endpoints.push(EndpointConfig::Address(address));
        self
    }

    /// Adds an endpoint with a weight and metadata labels (`zone`, `group`, ...).
    pub fn weighted_endpoint<K, V>(
        mut self,
        address: SocketAddr,
        weight: NonZeroU32,
        labels: impl IntoIterator<Item = (K, V)>,
    ) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.config.endpoints.push(EndpointConfig::Detailed {
            address,
            weight,
            metadata: labels
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        });
        self
    }

    /// The balancer; [`RoundRobin`] when not set.
    pub fn balancer(mut self, balancer: Arc<dyn Balancer>) -> Self {
        self.balancer = Some(balancer);
        self
    }

    /// Adds an extension told of every attempt (outlier detection, health checks).
    /// Call [`Cluster::activate`] within a tokio runtime once the cluster is in use.
    pub fn extension(mut self, extension: Arc<dyn ClusterExtension>) -> Self {
        self.extensions.push(extension);
        self
    }

    /// Secures every upstream connection (TLS origination).
    pub fn transport(mut self, transport: Arc<dyn UpstreamTransport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Speaks HTTP/2 with prior knowledge (h2c, or h2 over a TLS transport) to the
    /// endpoints, multiplexing requests.
    pub fn http2(mut self) -> Self {
        self.config.protocol = UpstreamProtocol::Http2;
        self
    }

    /// Speaks a plug-in protocol (Bolt, Dubbo) to the endpoints; `name` labels it.
    pub fn protocol(mut self, name: &str, protocol: Arc<dyn ProtocolUpstream>) -> Self {
        self.config.protocol = UpstreamProtocol::Named(name.into());
        self.protocol = Some(protocol);
        self
    }

    /// The TCP connect timeout (2 s by default).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// How long a body may stall in either direction (60 s by default).
    pub fn stream_idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.stream_idle_timeout = timeout;
        self
    }

    /// Connection pool settings.
    pub fn pool(mut self, pool: PoolConfig) -> Self {
        self.config.pool = pool;
        self
    }

    /// The retry budget that retries to this cluster draw from.
    pub fn retry_budget(mut self, budget: RetryBudgetConfig) -> Self {
        self.config.retry_budget = budget;
        self
    }

    /// Cluster-wide limits of requests and retries in flight (circuit breakers).
    pub fn circuit_breakers(mut self, breakers: crate::config::CircuitBreakersConfig) -> Self {
        self.config.circuit_breakers = breakers;
        self
    }

    /// Builds the cluster.
    ///
    /// # Errors
    /// What the config's validation would refuse, naming the field as the config
    /// would (`name`, `endpoints[1]`, `pool.max_connections`, ...).
    pub fn build(self) -> Result<Arc<Cluster>, ConfigError> {
        if self.config.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        crate::snapshot::validate_cluster(&self.config, "")?;
        let parts = ClusterParts {
            balancer: self
                .balancer
                .unwrap_or_else(|| Arc::new(RoundRobin::default())),
            extensions: self.extensions.into(),
            transport: self.transport,
            protocol: self.protocol,
        };
        Ok(Arc::new(Cluster::build(&self.config, parts, None, 1)))
    }
}
