//! Metrics of the hash balancers: how each request's endpoint was found.
//!
//! One [`BalancerMetrics`] object per server (`BuildContext::metrics` key
//! `lb/balancers`) renders the counters of every live ring hash and Maglev balancer,
//! labelled by cluster and policy, under one family:
//!
//! ```text
//! # TYPE proxy_lb_hash_picks_total counter
//! proxy_lb_hash_picks_total{cluster="users",policy="maglev",result="owner"} 1041
//! proxy_lb_hash_picks_total{cluster="users",policy="maglev",result="rehashed"} 3
//! proxy_lb_hash_picks_total{cluster="users",policy="maglev",result="fallback"} 0
//! proxy_lb_hash_picks_total{cluster="users",policy="maglev",result="no_key"} 12
//! proxy_lb_hash_picks_total{cluster="users",policy="maglev",result="none"} 0
//! ```
//!
//! `owner`: the key's own endpoint; `rehashed`: it was unhealthy and the next
//! healthy slot/point took the request; `fallback`: no table fit the endpoint set
//! (rendezvous hashing); `no_key`: the request carried no key (random pick); `none`:
//! no healthy endpoint. A growing `no_key` usually means a hash policy that does not
//! match the traffic.

use std::{
    fmt::{self, Write as _},
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc, Mutex, Weak,
    },
};

use proxy_core::metrics::{escape_label, RenderMetrics};

/// How a hash balancer found a request's endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HashPick {
    /// The key's own endpoint.
    Owner,
    /// The key's endpoint was unhealthy; a neighbour took it.
    Rehashed,
    /// No table for the endpoint set: rendezvous hashing.
    Fallback,
    /// The request carried no key: weighted random.
    NoKey,
    /// No healthy endpoint.
    None,
}

impl HashPick {
    const ALL: [Self; 5] = [
        Self::Owner,
        Self::Rehashed,
        Self::Fallback,
        Self::NoKey,
        Self::None,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Rehashed => "rehashed",
            Self::Fallback => "fallback",
            Self::NoKey => "no_key",
            Self::None => "none",
        }
    }
}

/// The pick counters of one hash balancer: relaxed atomic adds on the request path.
#[derive(Debug, Default)]
pub struct HashPickCounters {
    counts: [AtomicU64; 5],
}

impl HashPickCounters {
    /// Counts one pick.
    pub fn record(&self, pick: HashPick) {
        self.counts[pick as usize].fetch_add(1, Relaxed);
    }

    /// Picks counted as `pick` so far.
    pub fn get(&self, pick: HashPick) -> u64 {
        self.counts[pick as usize].load(Relaxed)
    }
}

/// The hash balancers of a server, rendered as one metric family. Registration (at
/// config load) takes a lock; counting does not.
#[derive(Default)]
pub struct BalancerMetrics {
    balancers: Mutex<Vec<Entry>>,
}

struct Entry {
    cluster: Box<str>,
    policy: &'static str,
    counters: Weak<HashPickCounters>,
}

impl fmt::Debug for BalancerMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.balancers.lock().map(|b| b.len()).unwrap_or(0);
        f.debug_struct("BalancerMetrics")
            .field("balancers", &n)
            .finish()
    }
}

impl BalancerMetrics {
    /// The key under which the object is kept (`BuildContext::metrics`).
    pub const KEY: &'static str = "lb/balancers";

    /// Counters for a new balancer of `policy` in `cluster`; rendered while the
    /// balancer holds them.
    pub fn register(&self, cluster: &str, policy: &'static str) -> Arc<HashPickCounters> {
        let counters = Arc::new(HashPickCounters::default());
        if let Ok(mut b) = self.balancers.lock() {
            b.retain(|e| e.counters.strong_count() > 0);
            b.push(Entry {
                cluster: cluster.into(),
                policy,
                counters: Arc::downgrade(&counters),
            });
        }
        counters
    }
}

impl RenderMetrics for BalancerMetrics {
    fn render(&self, out: &mut String) {
        let Ok(mut balancers) = self.balancers.lock() else {
            return;
        };
        balancers.retain(|e| e.counters.strong_count() > 0);
        let live: Vec<(&Entry, Arc<HashPickCounters>)> = balancers
            .iter()
            .filter_map(|e| e.counters.upgrade().map(|c| (e, c)))
            .collect();
        if live.is_empty() {
            return;
        }
        let _ = writeln!(out, "# TYPE proxy_lb_hash_picks_total counter");
        for (e, c) in live {
            let cluster = escape_label(&e.cluster);
            for pick in HashPick::ALL {
                let _ = writeln!(
                    out,
                    "proxy_lb_hash_picks_total{{cluster=\"{cluster}\",policy=\"{}\",result=\"{}\"}} {}",
                    e.policy,
                    pick.label(),
                    c.get(pick)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_live_balancers_once_per_family() {
        let m = BalancerMetrics::default();
        let a = m.register("users", "maglev");
        let b = m.register("carts", "ring_hash");
        a.record(HashPick::Owner);
        a.record(HashPick::Owner);
        b.record(HashPick::NoKey);
        let mut out = String::new();
        m.render(&mut out);
        assert_eq!(out.matches("# TYPE").count(), 1);
        assert!(out.contains(
            "proxy_lb_hash_picks_total{cluster=\"users\",policy=\"maglev\",result=\"owner\"} 2"
        ));
        assert!(out.contains(
            "proxy_lb_hash_picks_total{cluster=\"carts\",policy=\"ring_hash\",result=\"no_key\"} 1"
        ));
        drop(b);
        let mut out = String::new();
        m.render(&mut out);
        assert!(!out.contains("carts"));
        drop(a);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.is_empty());
    }
}
