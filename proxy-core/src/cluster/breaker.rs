//! Circuit breakers: cluster-wide budgets of requests and retries in flight, and the
//! cap on open upstream connections with its waiting requests.
//!
//! A budget is one atomic counter shared by every worker: taking a place is one
//! `fetch_add`, giving it back (when the [`Permit`] drops) one `fetch_sub`; no lock, no
//! allocation. The connection cap (`max_connections`, `max_pending_requests`) is
//! counted where connections open and close ([`crate::upstream`]), not per request: a
//! request that finds an idle pooled connection pays nothing for it. A cluster
//! without limits has no [`CircuitBreakers`] at all, so the request path pays one
//! branch.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use crate::{config::CircuitBreakersConfig, upstream::limit::ConnectionLimit, ProxyError};

/// Which budget a request or retry ran out of; also the `x-proxy-error-detail` of
/// the local reply and the `limit` label of the overflow counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakerLimit {
    /// `circuit_breakers.max_requests`.
    MaxRequests,
    /// `circuit_breakers.max_retries`.
    MaxRetries,
    /// `circuit_breakers.max_connections`: its overflows are the requests that found
    /// the cap reached and waited; a request that waited the connect timeout in vain
    /// fails with this detail.
    MaxConnections,
    /// `circuit_breakers.max_pending_requests`: its overflows are the requests refused
    /// because that many were waiting for a connection.
    MaxPendingRequests,
}

impl BreakerLimit {
    /// The config name of the limit (`max_requests`, `max_retries`,
    /// `max_connections`, `max_pending_requests`).
    pub fn name(self) -> &'static str {
        match self {
            Self::MaxRequests => "max_requests",
            Self::MaxRetries => "max_retries",
            Self::MaxConnections => "max_connections",
            Self::MaxPendingRequests => "max_pending_requests",
        }
    }

    const ALL: [Self; 4] = [
        Self::MaxRequests,
        Self::MaxRetries,
        Self::MaxConnections,
        Self::MaxPendingRequests,
    ];
}

/// One budget: places in use, the limit, and how often it was full.
#[derive(Debug)]
struct Budget {
    max: u64,
    open: AtomicU64,
    overflows: AtomicU64,
}

impl Budget {
    fn new(max: Option<u32>) -> Option<Self> {
        max.map(|m| Self {
            max: u64::from(m),
            open: AtomicU64::new(0),
            overflows: AtomicU64::new(0),
        })
    }

    fn try_take(&self) -> Option<Permit<'_>> {
        // Relaxed: the counter orders nothing else, it only has to be exact.
        if self.open.fetch_add(1, Ordering::Relaxed) < self.max {
            Some(Permit { open: &self.open })
        } else {
            self.open.fetch_sub(1, Ordering::Relaxed);
            self.overflows.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// A place taken in a budget, given back when dropped (also when the request's
/// future is dropped half-way).
#[derive(Debug)]
#[must_use = "the place is given back when the permit drops"]
pub struct Permit<'a> {
    open: &'a AtomicU64,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A cluster's circuit breakers, from its `circuit_breakers` section: the budgets
/// of requests and of retries in flight, and the cap on open connections with the
/// requests waiting under it, all endpoints and workers together.
///
/// # Example
/// ```
/// use proxy_core::{cluster::{BreakerLimit, CircuitBreakers}, config::CircuitBreakersConfig};
///
/// let cfg = CircuitBreakersConfig { max_requests: Some(1), ..Default::default() };
/// let breakers = CircuitBreakers::new(&cfg).expect("a limit is set");
/// let first = breakers.admit_request("web").unwrap();
/// let second = breakers.admit_request("web").unwrap_err();
/// assert_eq!(second.status(), 503);
/// assert_eq!(breakers.overflows(BreakerLimit::MaxRequests), 1);
/// drop(first);
/// assert!(breakers.admit_request("web").is_ok());
/// assert!(CircuitBreakers::new(&CircuitBreakersConfig::default()).is_none());
///
/// // The connection cap is enforced by the cluster's upstreams; here, its limits.
/// let cfg = CircuitBreakersConfig {
///     max_connections: Some(2),
///     max_pending_requests: Some(10),
///     ..Default::default()
/// };
/// let breakers = CircuitBreakers::new(&cfg).expect("a limit is set");
/// let limits: Vec<_> = breakers.limits().map(|(l, max, ..)| (l.name(), max)).collect();
/// assert_eq!(limits, [("max_connections", 2), ("max_pending_requests", 10)]);
/// ```
#[derive(Debug)]
pub struct CircuitBreakers {
    requests: Option<Budget>,
    retries: Option<Budget>,
    connections: Option<Arc<ConnectionLimit>>,
}

impl CircuitBreakers {
    /// The breakers of `cfg`; `None` when it sets no limit (nothing to count).
    /// `max_pending_requests` without `max_connections` has nothing to bound: no
    /// request ever waits for a connection.
    pub fn new(cfg: &CircuitBreakersConfig) -> Option<Self> {
        (!cfg.is_unlimited()).then(|| Self {
            requests: Budget::new(cfg.max_requests),
            retries: Budget::new(cfg.max_retries),
            connections: cfg
                .max_connections
                .map(|max| Arc::new(ConnectionLimit::new(max, cfg.max_pending_requests))),
        })
    }

    /// The cluster-wide connection cap the cluster's upstreams open connections
    /// under, if `max_connections` is set.
    pub(crate) fn connection_limit(&self) -> Option<&Arc<ConnectionLimit>> {
        self.connections.as_ref()
    }

    /// Takes a place for a request to cluster `cluster`; `None` inside `Ok` when
    /// requests are not limited.
    ///
    /// # Errors
    /// [`ProxyError::ClusterOverflow`] (503) when `max_requests` are in flight.
    pub fn admit_request(&self, cluster: &str) -> Result<Option<Permit<'_>>, ProxyError> {
        match &self.requests {
            None => Ok(None),
            Some(b) => b
                .try_take()
                .map(Some)
                .ok_or_else(|| ProxyError::ClusterOverflow {
                    cluster: cluster.into(),
                    limit: BreakerLimit::MaxRequests.name(),
                }),
        }
    }

    /// Takes a place for a retry: `None` when `max_retries` are in flight (the retry
    /// must not be attempted), a permit holding nothing when retries are not limited.
    pub fn admit_retry(&self) -> Option<Option<Permit<'_>>> {
        match &self.retries {
            None => Some(None),
            Some(b) => b.try_take().map(Some),
        }
    }

    /// Overflows of `limit` since the cluster was built: requests or retries refused
    /// (`max_requests`, `max_retries`, `max_pending_requests`), requests that had to
    /// wait for a connection (`max_connections`).
    pub fn overflows(&self, limit: BreakerLimit) -> u64 {
        self.counts(limit).map_or(0, |(_, _, overflows)| overflows)
    }

    /// Places of `limit` in use now: requests or retries in flight, connections
    /// open (`max_connections`), requests waiting for one (`max_pending_requests`).
    pub fn in_use(&self, limit: BreakerLimit) -> u64 {
        self.counts(limit).map_or(0, |(_, in_use, _)| in_use)
    }

    /// The limits that are set, with their counts: `(limit, max, in use, overflows)`.
    pub fn limits(&self) -> impl Iterator<Item = (BreakerLimit, u64, u64, u64)> + '_ {
        BreakerLimit::ALL.into_iter().filter_map(|l| {
            self.counts(l)
                .map(|(max, in_use, overflows)| (l, max, in_use, overflows))
        })
    }

    /// `(max, in use, overflows)` of `limit`, when it is set.
    fn counts(&self, limit: BreakerLimit) -> Option<(u64, u64, u64)> {
        let budget = |b: &Budget| {
            (
                b.max,
                b.open.load(Ordering::Relaxed),
                b.overflows.load(Ordering::Relaxed),
            )
        };
        let conns = self.connections.as_deref();
        match limit {
            BreakerLimit::MaxRequests => self.requests.as_ref().map(budget),
            BreakerLimit::MaxRetries => self.retries.as_ref().map(budget),
            BreakerLimit::MaxConnections => {
                conns.map(|c| (u64::from(c.max_connections()), c.open(), c.waited()))
            }
            BreakerLimit::MaxPendingRequests => conns.and_then(|c| {
                c.max_pending()
                    .map(|max| (u64::from(max), c.pending(), c.pending_overflows()))
            }),
        }
    }
}

/// Writes the breakers of `clusters` in Prometheus text:
/// `proxy_cluster_circuit_breaker_overflow_total{cluster,limit}` (requests refused,
/// retries not attempted, requests that waited for a connection),
/// `proxy_cluster_circuit_breaker_in_use{cluster,limit}` (for `max_connections`, the
/// connections open; for `max_pending_requests`, the requests waiting),
/// `proxy_cluster_circuit_breaker_limit{cluster,limit}`, and, for the clusters with a
/// connection cap, `proxy_cluster_circuit_breaker_pending{cluster}` (requests waiting
/// for a connection, also when `max_pending_requests` is not set).
pub(crate) fn render_breakers(out: &mut String, clusters: &[&std::sync::Arc<super::Cluster>]) {
    use std::fmt::Write as _;
    let with: Vec<_> = clusters
        .iter()
        .filter_map(|c| {
            c.breakers
                .as_ref()
                .map(|b| (crate::metrics::escape_label(&c.name), b))
        })
        .collect();
    if with.is_empty() {
        return;
    }
    for (metric, kind, pick) in [
        ("overflow_total", "counter", 3),
        ("in_use", "gauge", 2),
        ("limit", "gauge", 1),
    ] {
        let _ = writeln!(out, "# TYPE proxy_cluster_circuit_breaker_{metric} {kind}");
        for (name, b) in &with {
            for (limit, max, in_use, overflows) in b.limits() {
                let v = [0, max, in_use, overflows][pick];
                let _ = writeln!(
                    out,
                    "proxy_cluster_circuit_breaker_{metric}{{cluster=\"{name}\",limit=\"{}\"}} {v}",
                    limit.name()
                );
            }
        }
    }
    let capped: Vec<_> = with
        .iter()
        .filter_map(|(name, b)| b.connections.as_ref().map(|c| (name, c.pending())))
        .collect();
    if capped.is_empty() {
        return;
    }
    let _ = writeln!(out, "# TYPE proxy_cluster_circuit_breaker_pending gauge");
    for (name, pending) in capped {
        let _ = writeln!(
            out,
            "proxy_cluster_circuit_breaker_pending{{cluster=\"{name}\"}} {pending}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breakers(max_requests: Option<u32>, max_retries: Option<u32>) -> CircuitBreakers {
        CircuitBreakers::new(&CircuitBreakersConfig {
            max_requests,
            max_retries,
            ..Default::default()
        })
        .expect("a limit is set")
    }

    #[test]
    fn requests_over_the_limit_overflow_and_places_come_back() {
        let b = breakers(Some(2), None);
        let one = b.admit_request("c").unwrap();
        let two = b.admit_request("c").unwrap();
        assert!(one.is_some() && two.is_some());
        let err = b.admit_request("c").unwrap_err();
        assert_eq!(err.status(), 503);
        assert_eq!(err.reason(), "overflow");
        assert_eq!(err.detail(), Some("max_requests"));
        assert_eq!(b.in_use(BreakerLimit::MaxRequests), 2);
        assert_eq!(b.overflows(BreakerLimit::MaxRequests), 1);
        drop(one);
        assert_eq!(b.in_use(BreakerLimit::MaxRequests), 1);
        assert!(b.admit_request("c").is_ok());
        // Retries are not limited: the permit holds nothing.
        assert!(matches!(b.admit_retry(), Some(None)));
        assert_eq!(b.limits().count(), 1);
    }

    #[test]
    fn a_zero_limit_refuses_everything() {
        let b = breakers(Some(0), Some(0));
        assert!(b.admit_request("c").is_err());
        assert!(b.admit_retry().is_none());
        assert_eq!(b.overflows(BreakerLimit::MaxRetries), 1);
        assert_eq!(b.in_use(BreakerLimit::MaxRetries), 0);
    }

    #[test]
    fn retries_have_their_own_budget() {
        let b = breakers(None, Some(1));
        assert!(matches!(b.admit_request("c"), Ok(None)));
        let retry = b.admit_retry().expect("a place");
        assert!(retry.is_some());
        assert!(b.admit_retry().is_none());
        drop(retry);
        assert!(b.admit_retry().is_some());
    }

    #[test]
    fn places_are_exact_across_threads() {
        let b = std::sync::Arc::new(breakers(Some(8), None));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        if let Ok(p) = b.admit_request("c") {
                            assert!(b.in_use(BreakerLimit::MaxRequests) <= 8 + 4);
                            drop(p);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(b.in_use(BreakerLimit::MaxRequests), 0);
    }
}
