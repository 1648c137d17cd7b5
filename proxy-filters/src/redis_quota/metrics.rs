//! `proxy_filters_redis_quota_*`: decisions, Redis errors and Redis latency, per
//! filter.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc, RwLock,
    },
    time::Duration,
};

use proxy_core::metrics::{escape_label, RenderMetrics, LATENCY_BUCKETS};

use crate::metrics::Counter;

/// The counters of one `redis_quota` filter.
#[derive(Debug, Default)]
pub struct RedisQuotaCounters {
    /// Requests Redis counted within their quota.
    pub allowed: Counter,
    /// Requests Redis counted over their quota (answered 429).
    pub limited: Counter,
    /// Requests answered 429 from the remembered over-quota verdict, without Redis.
    pub limited_cached: Counter,
    /// Requests answered 429 by the `local` limit, without Redis.
    pub limited_local: Counter,
    /// Requests without the filter's key (no consumer, no such header): not counted.
    pub unkeyed: Counter,
    /// Requests let through because Redis could not answer (`failure_mode: open`).
    pub failed_open: Counter,
    /// Requests answered 503 because Redis could not answer (`failure_mode: closed`).
    pub failed_closed: Counter,
    /// Redis calls that did not answer within `redis.timeout`.
    pub redis_timeouts: Counter,
    /// Redis calls that failed (connection refused or lost, server error).
    pub redis_errors: Counter,
    /// Latency of the Redis calls that answered.
    pub redis_latency: LatencyHistogram,
}

/// A cumulative histogram over [`LATENCY_BUCKETS`].
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl LatencyHistogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS.partition_point(|&b| b < secs);
        self.buckets[i].fetch_add(1, Relaxed);
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(us, Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (le, n) in LATENCY_BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        cumulative += self.buckets[LATENCY_BUCKETS.len()].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// The counters of every `redis_quota` filter, by filter name, kept in the build
/// context under [`METRICS_KEY`] so that they survive reloads.
#[derive(Debug, Default)]
pub struct RedisQuotaMetrics {
    sets: RwLock<BTreeMap<String, Arc<RedisQuotaCounters>>>,
}

/// The build-context key of [`RedisQuotaMetrics`].
pub const METRICS_KEY: &str = "filters/redis_quota";

impl RedisQuotaMetrics {
    /// The counters of the filter `name` (the same `Arc` on every call).
    pub fn get(&self, name: &str) -> Arc<RedisQuotaCounters> {
        let sets = self.sets.read().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = sets.get(name) {
            return c.clone();
        }
        drop(sets);
        self.sets
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_owned())
            .or_default()
            .clone()
    }
}

const DECISIONS: &str = "proxy_filters_redis_quota_decisions_total";
const ERRORS: &str = "proxy_filters_redis_quota_redis_errors_total";
const LATENCY: &str = "proxy_filters_redis_quota_redis_duration_seconds";

impl RenderMetrics for RedisQuotaMetrics {
    fn render(&self, out: &mut String) {
        let sets = self.sets.read().unwrap_or_else(|e| e.into_inner());
        if sets.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {DECISIONS} Redis quota decisions.");
        let _ = writeln!(out, "# TYPE {DECISIONS} counter");
        for (name, c) in sets.iter() {
            let name = escape_label(name);
            for (decision, counter) in [
                ("allowed", &c.allowed),
                ("limited", &c.limited),
                ("limited_cached", &c.limited_cached),
                ("limited_local", &c.limited_local),
                ("unkeyed", &c.unkeyed),
                ("failed_open", &c.failed_open),
                ("failed_closed", &c.failed_closed),
            ] {
                let _ = writeln!(
                    out,
                    "{DECISIONS}{{filter=\"{name}\",decision=\"{decision}\"}} {}",
                    counter.get()
                );
            }
        }
        let _ = writeln!(out, "# HELP {ERRORS} Redis calls that failed or timed out.");
        let _ = writeln!(out, "# TYPE {ERRORS} counter");
        for (name, c) in sets.iter() {
            let name = escape_label(name);
            for (kind, counter) in [("timeout", &c.redis_timeouts), ("error", &c.redis_errors)] {
                let _ = writeln!(
                    out,
                    "{ERRORS}{{filter=\"{name}\",kind=\"{kind}\"}} {}",
                    counter.get()
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP {LATENCY} Latency of the Redis calls that answered."
        );
        let _ = writeln!(out, "# TYPE {LATENCY} histogram");
        for (name, c) in sets.iter() {
            let labels = format!("filter=\"{}\"", escape_label(name));
            c.redis_latency.render(out, LATENCY, &labels);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_once() {
        let m = RedisQuotaMetrics::default();
        m.get("a").allowed.add(3);
        m.get("b").redis_timeouts.inc();
        m.get("a").redis_latency.observe(Duration::from_millis(2));
        let mut out = String::new();
        m.render(&mut out);
        assert_eq!(out.matches(&format!("# TYPE {DECISIONS}")).count(), 1);
        assert!(out.contains(&format!(
            "{DECISIONS}{{filter=\"a\",decision=\"allowed\"}} 3"
        )));
        assert!(out.contains(&format!("{ERRORS}{{filter=\"b\",kind=\"timeout\"}} 1")));
        assert!(out.contains(&format!("{LATENCY}_bucket{{filter=\"a\",le=\"0.0025\"}} 1")));
        assert!(out.contains(&format!("{LATENCY}_bucket{{filter=\"a\",le=\"0.001\"}} 0")));
        assert!(out.contains(&format!("{LATENCY}_count{{filter=\"b\"}} 0")));
    }
}
