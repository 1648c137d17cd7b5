//! Clusters: endpoint sets with their upstream connections, the balancer seam,
//! cluster extensions (outlier detection, health checks), the retry budget and the
//! circuit breakers.

mod balancer;
mod breaker;
mod builder;
mod endpoint;
mod extension;

use std::{
    sync::{
        atomic::{AtomicI64, AtomicU64, Ordering},
        Arc, Mutex, Weak,
    },
    time::Duration,
};

pub use balancer::{Balancer, RoundRobin};
pub(crate) use breaker::render_breakers;
pub use breaker::{BreakerLimit, CircuitBreakers, Permit};
pub use builder::ClusterBuilder;
pub use endpoint::{Endpoint, HealthFlags};
pub use extension::{ClusterExtension, ClusterInfo, Outcome};

use crate::{
    config::{ClusterConfig, RetryBudgetConfig},
    metrics::RequestStats,
    protocol::ProtocolUpstream,
    upstream::{Upstream, UpstreamTransport},
    HttpRequest, HttpResponse, ProxyError,
};

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
            deposit: (cfg.budget_percent.fraction() * 1000.0) as i64,
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

/// An upstream cluster: endpoints, their balancer, extensions, stats and retry budget.
#[derive(Debug)]
pub struct Cluster {
    /// The cluster name.
    pub name: Arc<str>,
    /// The endpoints, in config order.
    pub endpoints: Arc<[Arc<Endpoint>]>,
    /// The balancer.
    pub balancer: Arc<dyn Balancer>,
    /// Extensions told of every attempt's outcome (outlier detection, health checks).
    pub extensions: Arc<[Arc<dyn ClusterExtension>]>,
    /// Request stats of the cluster.
    pub stats: Arc<RequestStats>,
    /// The retry budget.
    pub retry_budget: RetryBudget,
    /// The circuit breakers; `None` when `circuit_breakers` sets no limit.
    pub breakers: Option<Arc<CircuitBreakers>>,
    /// Rate limit of this cluster's failure logs.
    log_budget: std::sync::atomic::AtomicU64,
    pub(crate) config: ClusterConfig,
    pub(crate) transport: Option<Arc<dyn UpstreamTransport>>,
    pub(crate) protocol: Option<Arc<dyn ProtocolUpstream>>,
    /// Metrics objects the factories of this cluster's parts asked for.
    pub(crate) metrics: crate::snapshot::ExtraMetrics,
    /// Extensions of the previous cluster of this name that this one does not keep:
    /// retired when this cluster is activated.
    retired: Mutex<Vec<Weak<dyn ClusterExtension>>>,
}

/// The runtime parts of a cluster made from registered factories.
pub(crate) struct ClusterParts {
    pub(crate) balancer: Arc<dyn Balancer>,
    pub(crate) extensions: Arc<[Arc<dyn ClusterExtension>]>,
    pub(crate) transport: Option<Arc<dyn UpstreamTransport>>,
    pub(crate) protocol: Option<Arc<dyn ProtocolUpstream>>,
}

impl Cluster {
    /// Builds a cluster, reusing the endpoints (with their connections and stats) of
    /// `previous` whose address and upstream settings are unchanged; new endpoints
    /// keep connections for `workers` workers.
    pub(crate) fn build(
        cfg: &ClusterConfig,
        parts: ClusterParts,
        previous: Option<&Cluster>,
        workers: usize,
    ) -> Self {
        // Endpoints carry connections made with the old transport and protocol: keep
        // them only when those are the same instances.
        let same_connectors = previous.is_some_and(|p| {
            same_arc(&p.transport, &parts.transport) && same_arc(&p.protocol, &parts.protocol)
        });
        // Unchanged limits keep their counts: requests in flight across the swap
        // still hold their places, connections their slots.
        let breakers = previous
            .filter(|p| p.config.circuit_breakers == cfg.circuit_breakers)
            .and_then(|p| p.breakers.clone())
            .or_else(|| CircuitBreakers::new(&cfg.circuit_breakers).map(Arc::new));
        let connection_limit = breakers.as_ref().and_then(|b| b.connection_limit());
        let endpoints: Vec<Arc<Endpoint>> = cfg
            .endpoints
            .iter()
            .map(|e| {
                let metadata = e.metadata();
                let kept = previous.filter(|_| same_connectors).and_then(|p| {
                    p.endpoints.iter().find(|old| {
                        old.address == e.address()
                            && old.weight == e.weight()
                            && *old.metadata == metadata
                            && old.upstream.same_settings(cfg)
                            && old.upstream.same_connection_limit(connection_limit)
                    })
                });
                match kept {
                    Some(old) => old.clone(),
                    None => Arc::new(Endpoint::with_upstream(
                        e.address(),
                        e.weight(),
                        Arc::new(metadata),
                        Upstream::new(
                            e.address(),
                            cfg,
                            parts.transport.clone(),
                            parts.protocol.as_ref(),
                            workers,
                        )
                        .with_connection_limit(connection_limit.cloned()),
                    )),
                }
            })
            .collect();
        let endpoints: Arc<[Arc<Endpoint>]> = endpoints.into();
        parts.balancer.endpoints_changed(&endpoints);
        let stats = previous.map_or_else(Arc::default, |p| p.stats.clone());
        let kept = |x: &Arc<dyn ClusterExtension>| {
            parts
                .extensions
                .iter()
                .any(|n| std::ptr::addr_eq(Arc::as_ptr(n), Arc::as_ptr(x)))
        };
        let retired = previous.map_or_else(Vec::new, |p| {
            p.extensions
                .iter()
                .filter(|x| !kept(x))
                .map(Arc::downgrade)
                .collect()
        });
        Self {
            name: cfg.name.as_str().into(),
            endpoints,
            balancer: parts.balancer,
            extensions: parts.extensions,
            stats,
            retry_budget: RetryBudget::new(&cfg.retry_budget),
            breakers,
            log_budget: std::sync::atomic::AtomicU64::new(0),
            config: cfg.clone(),
            transport: parts.transport,
            protocol: parts.protocol,
            metrics: Default::default(),
            retired: Mutex::new(retired),
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

    /// The cluster's config section.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// What the extensions see of this cluster.
    pub fn info(&self) -> ClusterInfo {
        ClusterInfo {
            name: self.name.clone(),
            endpoints: self.endpoints.clone(),
        }
    }

    /// Activates the extensions (the cluster went live): their background tasks
    /// (health probes, ejection timers) start on the current tokio runtime. The
    /// server does this for config-built clusters; call it for a cluster built in
    /// code that has extensions.
    pub fn activate(&self) {
        // The previous cluster's extensions this one does not keep: retired first,
        // so that the flags they set are gone before the new ones look.
        let retired = std::mem::take(&mut *self.retired.lock().unwrap_or_else(|e| e.into_inner()));
        for x in retired.iter().filter_map(Weak::upgrade) {
            x.retire();
        }
        if self.extensions.is_empty() {
            return;
        }
        let info = self.info();
        for x in self.extensions.iter() {
            x.activate(&info);
        }
    }

    /// The endpoint the balancer picks for a request with head `req`.
    pub fn pick(&self, req: &http::request::Parts) -> Option<Arc<Endpoint>> {
        self.balancer
            .pick(&self.endpoints, req)
            .and_then(|i| self.endpoints.get(i).cloned())
    }

    /// Sends `req` to an endpoint of this cluster: picks one, prepares the request
    /// for the cluster's protocol (hop-by-hop headers removed, the URI form and
    /// version set; Host kept), sends it, and counts stats and outcomes. No retries
    /// and no timeout: the caller bounds it. For traffic mirroring and for filters
    /// that call a side cluster.
    ///
    /// # Errors
    /// [`ProxyError::ClusterOverflow`] when the cluster's `max_requests` are in flight,
    /// [`ProxyError::NoEndpoints`] when no endpoint is usable, else the upstream error.
    pub async fn send(&self, mut req: HttpRequest) -> Result<HttpResponse, ProxyError> {
        let _permit = match &self.breakers {
            None => None,
            Some(b) => b.admit_request(&self.name)?,
        };
        let head_slab = crate::bufs::Slab::for_answer_head(req.version());
        crate::proxy::prepare_for_cluster(&mut req, self);
        let (mut parts, body) = req.into_parts();
        let Some(endpoint) = self.pick(&parts) else {
            self.stats.local_errors.add("no_endpoints");
            return Err(ProxyError::NoEndpoints {
                cluster: self.name.clone(),
            });
        };
        let started = std::time::Instant::now();
        let endpoint_guard = crate::metrics::InFlight::start(&endpoint.stats);
        let cluster_guard = crate::metrics::InFlight::start(&self.stats);
        let result = endpoint
            .upstream
            .send(&mut parts, false, body, head_slab, None)
            .await;
        endpoint_guard.done();
        cluster_guard.done();
        self.record_attempt(
            &endpoint,
            result.as_ref().map(|r| r.status()),
            started.elapsed(),
        );
        result
    }

    /// Counts an attempt that [`Cluster::pick`]ed `endpoint` and started its stats:
    /// the answer's status or the proxy error (a timeout is `ProxyError::Timeout`),
    /// in the endpoint's and the cluster's stats, and the outcome for the extensions.
    pub(crate) fn record_attempt(
        &self,
        endpoint: &Arc<Endpoint>,
        result: Result<http::StatusCode, &ProxyError>,
        elapsed: Duration,
    ) {
        if !self.extensions.is_empty() {
            let outcome = match result {
                Ok(status) => Some(Outcome::Response(status)),
                Err(e) => outcome_of_error(e),
            };
            if let Some(o) = outcome {
                self.report(endpoint, &o, elapsed);
            }
        }
        let status = match result {
            Ok(status) => status,
            Err(e) => {
                if matches!(
                    e,
                    ProxyError::Connect { .. }
                        | ProxyError::Upstream { .. }
                        | ProxyError::UpstreamProtocol { .. }
                        | ProxyError::ResponseTooLarge { .. }
                ) && crate::metrics::log_allowed(&self.log_budget)
                {
                    tracing::warn!(
                        cluster = %self.name,
                        endpoint = %endpoint.address,
                        reason = e.reason(),
                        detail = e.detail().unwrap_or("-"),
                        error = %crate::DisplayChain(e),
                        "upstream attempt failed"
                    );
                }
                endpoint.stats.local_errors.add(e.reason());
                self.stats.local_errors.add(e.reason());
                e.status()
            }
        };
        endpoint.stats.finish(status.as_u16(), elapsed);
        self.stats.finish(status.as_u16(), elapsed);
    }

    /// Tells the extensions how an attempt to `endpoint` ended.
    pub(crate) fn report(&self, endpoint: &Arc<Endpoint>, outcome: &Outcome, latency: Duration) {
        for x in self.extensions.iter() {
            x.on_outcome(endpoint, outcome, latency);
        }
    }
}

/// The outcome an endpoint is charged with for a failed attempt, if it was its doing.
/// A response over the cluster's size limit is not: the endpoint answered, and a
/// limit set too low for one method must not get it ejected.
pub(crate) fn outcome_of_error(e: &ProxyError) -> Option<Outcome> {
    match e {
        ProxyError::Connect { .. } | ProxyError::Overflow { .. } => Some(Outcome::ConnectFailure),
        ProxyError::Upstream { .. } | ProxyError::UpstreamProtocol { .. } => Some(Outcome::Reset),
        ProxyError::Timeout => Some(Outcome::Timeout),
        _ => None,
    }
}

fn same_arc<T: ?Sized>(a: &Option<Arc<T>>, b: &Option<Arc<T>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_budget_allows_min_then_ratio() {
        let b = RetryBudget::new(&RetryBudgetConfig {
            budget_percent: 50.0.try_into().unwrap(),
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
