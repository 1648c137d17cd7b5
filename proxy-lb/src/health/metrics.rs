//! Health check metrics, per cluster.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc, Mutex,
    },
};

use crate::steering::escape;

const RESULTS: [&str; 5] = [
    "success",
    "connect_failure",
    "timeout",
    "bad_response",
    "unexpected_status",
];

/// Counters of one cluster's health checks.
#[derive(Debug, Default)]
pub struct ClusterHealthCounters {
    results: [AtomicU64; 5],
    became_healthy: AtomicU64,
    became_unhealthy: AtomicU64,
}

impl ClusterHealthCounters {
    /// Counts one probe; `failure` is the failure's label, `None` for a success.
    pub(crate) fn checked(&self, failure: Option<&str>) {
        let label = failure.unwrap_or("success");
        let i = RESULTS.iter().position(|r| *r == label).unwrap_or(3);
        self.results[i].fetch_add(1, Relaxed);
    }

    pub(crate) fn transition(&self, healthy: bool) {
        if healthy {
            self.became_healthy.fetch_add(1, Relaxed);
        } else {
            self.became_unhealthy.fetch_add(1, Relaxed);
        }
    }

    /// Probes with result `label` (`success`, `connect_failure`, `timeout`,
    /// `bad_response`, `unexpected_status`) so far.
    pub fn results(&self, label: &str) -> u64 {
        RESULTS
            .iter()
            .position(|r| *r == label)
            .map_or(0, |i| self.results[i].load(Relaxed))
    }
}

/// Health check metrics of every cluster (`BuildContext::metrics` key `lb/health`).
/// The lock is taken when a cluster is built and when metrics are rendered.
#[derive(Debug, Default)]
pub struct HealthMetrics {
    clusters: Mutex<BTreeMap<String, Arc<ClusterHealthCounters>>>,
}

impl HealthMetrics {
    /// The counters of cluster `name` (the same ones across reloads).
    pub fn cluster(&self, name: &str) -> Arc<ClusterHealthCounters> {
        let mut m = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(name.to_owned()).or_default().clone()
    }
}

impl proxy_core::metrics::RenderMetrics for HealthMetrics {
    fn render(&self, out: &mut String) {
        let m = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(
            out,
            "# HELP proxy_lb_health_checks_total Active health check probes, by result."
        );
        let _ = writeln!(out, "# TYPE proxy_lb_health_checks_total counter");
        for (name, c) in m.iter() {
            for (i, r) in RESULTS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "proxy_lb_health_checks_total{{cluster=\"{}\",result=\"{r}\"}} {}",
                    escape(name),
                    c.results[i].load(Relaxed)
                );
            }
        }
        let _ = writeln!(out, "# HELP proxy_lb_health_transitions_total Endpoints turning healthy or unhealthy by active health checks.");
        let _ = writeln!(out, "# TYPE proxy_lb_health_transitions_total counter");
        for (name, c) in m.iter() {
            let name = escape(name);
            let _ = writeln!(
                out,
                "proxy_lb_health_transitions_total{{cluster=\"{name}\",to=\"healthy\"}} {}",
                c.became_healthy.load(Relaxed)
            );
            let _ = writeln!(
                out,
                "proxy_lb_health_transitions_total{{cluster=\"{name}\",to=\"unhealthy\"}} {}",
                c.became_unhealthy.load(Relaxed)
            );
        }
    }
}
