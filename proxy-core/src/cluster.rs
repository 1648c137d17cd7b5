//! Clusters: endpoint sets with their upstream connections, the balancer seam, and
//! the retry budget.

use std::{
    fmt,
    net::SocketAddr,
    num::NonZeroU32,
    sync::{
        atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use crate::{
    config::{ClusterConfig, RetryBudgetConfig},
    metrics::RequestStats,
    upstream::Upstream,
};

/// One upstream endpoint of a cluster.
#[derive(Debug)]
pub struct Endpoint {
    /// The endpoint address.
    pub address: SocketAddr,
    /// Relative weight for balancers that use one.
    pub weight: NonZeroU32,
    /// Whether the endpoint may receive traffic. Health checking and outlier detection
    /// (capability crates) flip this; balancers skip endpoints where it is false.
    pub healthy: AtomicBool,
    /// Request stats of this endpoint.
    pub stats: RequestStats,
    pub(crate) upstream: Upstream,
}

impl Endpoint {
    /// Whether the endpoint may receive traffic.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Upstream connections open now.
    pub fn open_connections(&self) -> u32 {
        self.upstream.open.open()
    }
}

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
    /// The index into `endpoints` to send the request with head `req` to, or `None` when no endpoint is usable.
    fn pick(&self, endpoints: &[Arc<Endpoint>], req: &http::request::Parts) -> Option<usize>;
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

/// Limits retries to a share of the requests, so that retries cannot multiply the load
/// on a failing cluster. Lock-free: a token balance in thousandths of a retry.
#[derive(Debug)]
pub struct RetryBudget {
    balance: AtomicI64,
    deposit: i64,
    per_second: i64,
    cap: i64,
    last_refill_ms: AtomicU64,
    epoch: std::time::Instant,
}

impl RetryBudget {
    /// A budget from its config.
    pub fn new(cfg: &RetryBudgetConfig) -> Self {
        let per_second = i64::from(cfg.min_retries_per_second) * 1000;
        Self {
            balance: AtomicI64::new(per_second),
            deposit: (cfg.ratio * 1000.0) as i64,
            per_second,
            // At most ten seconds' worth of minimum retries plus 1000 retries saved up.
            cap: per_second * 10 + 1_000_000,
            last_refill_ms: AtomicU64::new(0),
            epoch: std::time::Instant::now(),
        }
    }

    /// Records a first attempt.
    pub fn deposit(&self) {
        if self.deposit > 0 && self.balance.load(Ordering::Relaxed) < self.cap {
            self.balance.fetch_add(self.deposit, Ordering::Relaxed);
        }
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn withdraw(&self) -> bool {
        self.refill();
        if self.balance.fetch_sub(1000, Ordering::AcqRel) >= 1000 {
            true
        } else {
            self.balance.fetch_add(1000, Ordering::AcqRel);
            false
        }
    }

    fn refill(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        let last = self.last_refill_ms.load(Ordering::Relaxed);
        let elapsed = now.saturating_sub(last);
        if elapsed >= 100
            && self
                .last_refill_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            let add = self.per_second * elapsed.min(10_000) as i64 / 1000;
            let cur = self.balance.load(Ordering::Relaxed);
            if cur < self.cap {
                self.balance
                    .fetch_add(add.min(self.cap - cur), Ordering::Relaxed);
            }
        }
    }
}

/// An upstream cluster: endpoints, their balancer, stats and retry budget.
#[derive(Debug)]
pub struct Cluster {
    /// The cluster name.
    pub name: Arc<str>,
    /// The endpoints, in config order.
    pub endpoints: Arc<[Arc<Endpoint>]>,
    /// The balancer.
    pub balancer: Arc<dyn Balancer>,
    /// Request stats of the cluster.
    pub stats: Arc<RequestStats>,
    /// The retry budget.
    pub retry_budget: RetryBudget,
    pub(crate) config: ClusterConfig,
}

impl Cluster {
    /// Builds a cluster, reusing the endpoints (with their connections and stats) of
    /// `previous` whose address and upstream settings are unchanged.
    pub(crate) fn build(
        cfg: &ClusterConfig,
        balancer: Arc<dyn Balancer>,
        previous: Option<&Cluster>,
    ) -> Self {
        let endpoints: Vec<Arc<Endpoint>> = cfg
            .endpoints
            .iter()
            .map(|e| {
                let kept = previous.and_then(|p| {
                    p.endpoints.iter().find(|old| {
                        old.address == e.address()
                            && old.weight == e.weight()
                            && old.upstream.same_settings(cfg)
                    })
                });
                match kept {
                    Some(old) => old.clone(),
                    None => Arc::new(Endpoint {
                        address: e.address(),
                        weight: e.weight(),
                        healthy: AtomicBool::new(true),
                        stats: RequestStats::default(),
                        upstream: Upstream::new(e.address(), cfg),
                    }),
                }
            })
            .collect();
        let stats = previous.map_or_else(Arc::default, |p| p.stats.clone());
        Self {
            name: cfg.name.as_str().into(),
            endpoints: endpoints.into(),
            balancer,
            stats,
            retry_budget: RetryBudget::new(&cfg.retry_budget),
            config: cfg.clone(),
        }
    }

    /// Closes idle upstream connections past their idle timeout.
    pub(crate) fn evict_expired(&self) {
        for e in self.endpoints.iter() {
            e.upstream.evict_expired();
        }
    }

    /// The configured connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.config.connect_timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_budget_allows_min_then_ratio() {
        let b = RetryBudget::new(&RetryBudgetConfig {
            ratio: 0.5,
            min_retries_per_second: 2,
        });
        assert!(b.withdraw());
        assert!(b.withdraw());
        assert!(!b.withdraw());
        for _ in 0..4 {
            b.deposit();
        }
        assert!(b.withdraw());
        assert!(b.withdraw());
        assert!(!b.withdraw());
    }
}
