//! The balancer seam and the built-in round robin.

use std::{
    fmt,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use super::Endpoint;

/// Picks an endpoint for each request. Balancers are shared by every request of a
/// cluster: keep state in atomics, never behind a lock.
///
/// Capability crates (proxy-lb) provide more policies and register them by name in
/// [`crate::Registry`].
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use proxy_core::{Balancer, Endpoint};
///
/// /// Always the first healthy endpoint.
/// #[derive(Debug)]
/// struct First;
/// impl Balancer for First {
///     fn pick(&self, endpoints: &[Arc<Endpoint>], _req: &http::request::Parts) -> Option<usize> {
///         endpoints.iter().position(|e| e.is_healthy())
///     }
/// }
/// ```
pub trait Balancer: fmt::Debug + Send + Sync + 'static {
    /// The index into `endpoints` to send the request with head `req` to, or `None`
    /// when no endpoint is usable.
    fn pick(&self, endpoints: &[Arc<Endpoint>], req: &http::request::Parts) -> Option<usize>;

    /// The cluster was built with this balancer over `endpoints`: at startup, and on
    /// every reload that keeps the cluster's `lb` section (the instance is kept, so
    /// its state survives). Off the request path: build lookup tables here. It runs
    /// while the new config is validated, so a reload refused later may have told a
    /// kept instance of a set that never went live: keep serving the endpoint slice
    /// `pick` is given (check a table was built for it, else fall back).
    fn endpoints_changed(&self, endpoints: &Arc<[Arc<Endpoint>]>) {
        let _ = endpoints;
    }

    /// Whether `pick` reads [`crate::proxy::ConnInfo`] from the request extensions
    /// (hashing by source address); the proxy then puts it there on every request.
    fn needs_conn_info(&self) -> bool {
        false
    }
}

/// Round robin over healthy endpoints (weights ignored).
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl Balancer for RoundRobin {
    fn pick(&self, endpoints: &[Arc<Endpoint>], _req: &http::request::Parts) -> Option<usize> {
        let n = endpoints.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| endpoints[i].is_healthy())
    }
}
