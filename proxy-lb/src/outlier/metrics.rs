//! Outlier detection metrics, per cluster.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        atomic::{AtomicI64, AtomicU64, Ordering::Relaxed},
        Arc, Mutex,
    },
};

use super::math::EjectionReason;
use crate::steering::escape;

/// Counters of one cluster's outlier detection.
#[derive(Debug, Default)]
pub struct ClusterOutlierCounters {
    ejections: [AtomicU64; 5],
    refused: AtomicU64,
    active: AtomicI64,
    readmissions: AtomicU64,
    probe_failures: AtomicU64,
    reports_ok: AtomicU64,
    reports_failed: AtomicU64,
    removals: AtomicU64,
}

impl ClusterOutlierCounters {
    pub(crate) fn ejected(&self, reason: EjectionReason) {
        self.ejections[reason.index()].fetch_add(1, Relaxed);
        self.active.fetch_add(1, Relaxed);
    }
    pub(crate) fn refused(&self) {
        self.refused.fetch_add(1, Relaxed);
    }
    pub(crate) fn readmitted(&self) {
        self.readmissions.fetch_add(1, Relaxed);
        self.active.fetch_sub(1, Relaxed);
    }
    pub(crate) fn left_ejection(&self) {
        self.active.fetch_sub(1, Relaxed);
    }
    pub(crate) fn probe_failed(&self) {
        self.probe_failures.fetch_add(1, Relaxed);
    }
    pub(crate) fn reported(&self, ok: bool) {
        if ok {
            self.reports_ok.fetch_add(1, Relaxed);
        } else {
            self.reports_failed.fetch_add(1, Relaxed);
        }
    }
    pub(crate) fn removed(&self) {
        self.removals.fetch_add(1, Relaxed);
    }

    /// Ejections for `reason` so far.
    pub fn ejections(&self, reason: EjectionReason) -> u64 {
        self.ejections[reason.index()].load(Relaxed)
    }

    /// Endpoints ejected now.
    pub fn active(&self) -> i64 {
        self.active.load(Relaxed)
    }

    /// Readmissions after a passed probe so far.
    pub fn readmissions(&self) -> u64 {
        self.readmissions.load(Relaxed)
    }
}

/// Outlier detection metrics of every cluster (`BuildContext::metrics` key
/// `lb/outlier`). The lock is taken when a cluster is built and when metrics are
/// rendered, never per request.
#[derive(Debug, Default)]
pub struct OutlierMetrics {
    clusters: Mutex<BTreeMap<String, Arc<ClusterOutlierCounters>>>,
}

impl OutlierMetrics {
    /// The counters of cluster `name` (the same ones across reloads).
    pub fn cluster(&self, name: &str) -> Arc<ClusterOutlierCounters> {
        let mut m = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(name.to_owned()).or_default().clone()
    }
}

type Get = fn(&ClusterOutlierCounters) -> i64;

impl proxy_core::metrics::RenderMetrics for OutlierMetrics {
    fn render(&self, out: &mut String) {
        let m = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(
            out,
            "# HELP proxy_lb_outlier_ejections_total Endpoints ejected, by reason."
        );
        let _ = writeln!(out, "# TYPE proxy_lb_outlier_ejections_total counter");
        for (name, c) in m.iter() {
            for r in EjectionReason::ALL {
                let _ = writeln!(
                    out,
                    "proxy_lb_outlier_ejections_total{{cluster=\"{}\",reason=\"{}\"}} {}",
                    escape(name),
                    r.as_str(),
                    c.ejections(r)
                );
            }
        }
        let families: [(&str, &str, &str, Get); 7] = [
            (
                "proxy_lb_outlier_ejections_active",
                "gauge",
                "Endpoints ejected now.",
                |c| c.active.load(Relaxed),
            ),
            (
                "proxy_lb_outlier_ejections_refused_total",
                "counter",
                "Ejections refused by the max ejection percent or the panic threshold.",
                |c| c.refused.load(Relaxed) as i64,
            ),
            (
                "proxy_lb_outlier_readmissions_total",
                "counter",
                "Ejected endpoints readmitted after a passed probe.",
                |c| c.readmissions.load(Relaxed) as i64,
            ),
            (
                "proxy_lb_outlier_probe_failures_total",
                "counter",
                "Readmission probes that failed.",
                |c| c.probe_failures.load(Relaxed) as i64,
            ),
            (
                "proxy_lb_outlier_healing_reports_total",
                "counter",
                "Ejections reported to the healing sink.",
                |c| c.reports_ok.load(Relaxed) as i64,
            ),
            (
                "proxy_lb_outlier_healing_report_failures_total",
                "counter",
                "Reports the healing sink did not take.",
                |c| c.reports_failed.load(Relaxed) as i64,
            ),
            (
                "proxy_lb_outlier_removals_total",
                "counter",
                "Endpoints removed at the healing sink's request.",
                |c| c.removals.load(Relaxed) as i64,
            ),
        ];
        for (family, kind, help, get) in families {
            let _ = writeln!(out, "# HELP {family} {help}");
            let _ = writeln!(out, "# TYPE {family} {kind}");
            for (name, c) in m.iter() {
                let _ = writeln!(
                    out,
                    "{family}{{cluster=\"{}\"}} {}",
                    escape(name),
                    get(c).max(0)
                );
            }
        }
    }
}
