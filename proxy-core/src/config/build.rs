//! Constructors for the parts of the config model that code builds most: virtual
//! hosts and routes, with every optional field at its default.

use std::time::Duration;

use super::{PathMatchConfig, RetryPolicyConfig, RouteConfig, RouteMatchConfig, VirtualHostConfig};

impl VirtualHostConfig {
    /// A virtual host serving `domains` (`"*"` for any), with no routes yet.
    ///
    /// # Example
    /// ```
    /// use proxy_core::config::{RouteConfig, VirtualHostConfig};
    /// use proxy_core::router::RouteTable;
    ///
    /// let vhost = VirtualHostConfig::new("all", ["*"])
    ///     .route(RouteConfig::new("api").prefix("/api").named("api"))
    ///     .route(RouteConfig::new("web"));
    /// let table = RouteTable::build("", &[vhost], &|c| c == "api" || c == "web").unwrap();
    /// assert_eq!(table.routes().count(), 2);
    /// ```
    pub fn new<D: Into<String>>(
        name: impl Into<String>,
        domains: impl IntoIterator<Item = D>,
    ) -> Self {
        Self {
            name: name.into(),
            domains: domains.into_iter().map(Into::into).collect(),
            routes: Vec::new(),
            filter_overrides: Default::default(),
        }
    }

    /// Adds a route, tried after the ones added before it.
    #[must_use]
    pub fn route(mut self, route: RouteConfig) -> Self {
        self.routes.push(route);
        self
    }
}

impl RouteConfig {
    /// A route sending every request to `cluster`; narrow it with [`RouteConfig::prefix`]
    /// and the other methods, or set [`RouteConfig::matcher`].
    pub fn new(cluster: impl Into<String>) -> Self {
        Self {
            name: None,
            matcher: RouteMatchConfig {
                path: None,
                methods: Vec::new(),
                headers: Vec::new(),
            },
            cluster: cluster.into(),
            timeout: None,
            retry: None,
            prefix_rewrite: None,
            host_rewrite: None,
            request_headers_to_add: Vec::new(),
            request_headers_to_remove: Vec::new(),
            response_headers_to_add: Vec::new(),
            response_headers_to_remove: Vec::new(),
            filters: Vec::new(),
            filter_overrides: Default::default(),
        }
    }

    /// Names the route (its metrics label).
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Matches paths starting with `prefix`.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.matcher.path = Some(PathMatchConfig::Prefix(prefix.into()));
        self
    }

    /// The whole-request timeout, retries included.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The retry policy.
    #[must_use]
    pub fn retry(mut self, retry: RetryPolicyConfig) -> Self {
        self.retry = Some(retry);
        self
    }
}
