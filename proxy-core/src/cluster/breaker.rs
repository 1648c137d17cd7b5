//! Circuit breakers: cluster-wide budgets of requests and retries in flight.
//!
//! A budget is one atomic counter shared by every worker: taking a place is one
//! `fetch_add`, giving it back (when the [`Permit`] drops) one `fetch_sub`; no lock, no
//! allocation. A cluster without limits has no [`CircuitBreakers`] at all, so the
//! request path pays one branch.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::{config::CircuitBreakersConfig, ProxyError};

/// Which budget a request or retry ran out of; also the `x-proxy-error-detail` of
/// the local reply and the `limit` label of the overflow counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakerLimit {
    /// `circuit_breakers.max_requests`.
    MaxRequests,
    /// `circuit_breakers.max_retries`.
    MaxRetries,
}

impl BreakerLimit {
    /// The config name of the limit (`max_requests`, `max_retries`).
    pub fn name(self) -> &'static str {
        match self {
            Self::MaxRequests => "max_requests",
            Self::MaxRetries => "max_retries",
        }
    }
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
/// of requests and of retries in flight, all endpoints and workers together.
///
/// # Example
/// ```
/// use proxy_core::{cluster::{BreakerLimit, CircuitBreakers}, config::CircuitBreakersConfig};
///
/// let cfg = CircuitBreakersConfig { max_requests: Some(1), max_retries: None };
/// let breakers = CircuitBreakers::new(&cfg).expect("a limit is set");
/// let first = breakers.admit_request("web").unwrap();
/// let second = breakers.admit_request("web").unwrap_err();
/// assert_eq!(second.status(), 503);
/// assert_eq!(breakers.overflows(BreakerLimit::MaxRequests), 1);
/// drop(first);
/// assert!(breakers.admit_request("web").is_ok());
/// assert!(CircuitBreakers::new(&CircuitBreakersConfig::default()).is_none());
/// ```
#[derive(Debug)]
pub struct CircuitBreakers {
    requests: Option<Budget>,
    retries: Option<Budget>,
}

impl CircuitBreakers {
    /// The breakers of `cfg`; `None` when it sets no limit (nothing to count).
    pub fn new(cfg: &CircuitBreakersConfig) -> Option<Self> {
        (!cfg.is_unlimited()).then(|| Self {
            requests: Budget::new(cfg.max_requests),
            retries: Budget::new(cfg.max_retries),
        })
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

    /// Requests or retries refused by `limit` since the cluster was built.
    pub fn overflows(&self, limit: BreakerLimit) -> u64 {
        self.budget(limit)
            .map_or(0, |b| b.overflows.load(Ordering::Relaxed))
    }

    /// Places of `limit` in use now.
    pub fn in_use(&self, limit: BreakerLimit) -> u64 {
        self.budget(limit)
            .map_or(0, |b| b.open.load(Ordering::Relaxed))
    }

    /// The limits that are set, with their counts: `(limit, max, in use, overflows)`.
    pub fn limits(&self) -> impl Iterator<Item = (BreakerLimit, u64, u64, u64)> + '_ {
        [BreakerLimit::MaxRequests, BreakerLimit::MaxRetries]
            .into_iter()
            .filter_map(|l| {
                self.budget(l).map(|b| {
                    (
                        l,
                        b.max,
                        b.open.load(Ordering::Relaxed),
                        b.overflows.load(Ordering::Relaxed),
                    )
                })
            })
    }

    fn budget(&self, limit: BreakerLimit) -> Option<&Budget> {
        match limit {
            BreakerLimit::MaxRequests => self.requests.as_ref(),
            BreakerLimit::MaxRetries => self.retries.as_ref(),
        }
    }
}

/// Writes the breakers of `clusters` in Prometheus text:
/// `proxy_cluster_circuit_breaker_overflow_total{cluster,limit}` (requests refused,
/// retries not attempted), `proxy_cluster_circuit_breaker_in_use{cluster,limit}` and
/// `proxy_cluster_circuit_breaker_limit{cluster,limit}`.
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breakers(max_requests: Option<u32>, max_retries: Option<u32>) -> CircuitBreakers {
        CircuitBreakers::new(&CircuitBreakersConfig {
            max_requests,
            max_retries,
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
