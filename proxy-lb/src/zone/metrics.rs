//! Zone routing metrics: decisions by source, failovers by step, requests with no
//! available zone.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

use super::{decide::ZoneSource, topology::FailoverStep};

/// Counters of every `zone_routing` filter (`BuildContext::metrics` key `lb/zone`).
#[derive(Debug, Default)]
pub struct ZoneCounters {
    decisions: [AtomicU64; 4],
    failovers: [AtomicU64; 4],
    unavailable: AtomicU64,
    connect_retries: AtomicU64,
}

impl ZoneCounters {
    /// Records one decision.
    pub fn record(&self, source: ZoneSource, step: FailoverStep, served: bool) {
        self.record_decision(source);
        self.record_outcome(step, served);
    }

    /// Records where a request's zone came from.
    pub fn record_decision(&self, source: ZoneSource) {
        let s = ZoneSource::ALL
            .iter()
            .position(|x| *x == source)
            .unwrap_or(0);
        self.decisions[s].fetch_add(1, Relaxed);
    }

    /// Records a request sent to the next zone after a connect failure.
    pub fn record_connect_retry(&self) {
        self.connect_retries.fetch_add(1, Relaxed);
    }

    /// Requests sent to the next zone after a connect failure so far.
    pub fn connect_retries(&self) -> u64 {
        self.connect_retries.load(Relaxed)
    }

    /// Records how far the failover went for the zone that served a request, or
    /// that no zone could.
    pub fn record_outcome(&self, step: FailoverStep, served: bool) {
        if !served {
            self.unavailable.fetch_add(1, Relaxed);
        } else if step != FailoverStep::None {
            let i = FailoverStep::ALL
                .iter()
                .position(|x| *x == step)
                .unwrap_or(0);
            self.failovers[i].fetch_add(1, Relaxed);
        }
    }

    /// Failovers that went `step` far so far.
    pub fn failovers(&self, step: FailoverStep) -> u64 {
        let i = FailoverStep::ALL
            .iter()
            .position(|x| *x == step)
            .unwrap_or(0);
        self.failovers[i].load(Relaxed)
    }

    /// Decisions whose zone came from `source` so far.
    pub fn decisions(&self, source: ZoneSource) -> u64 {
        let s = ZoneSource::ALL
            .iter()
            .position(|x| *x == source)
            .unwrap_or(0);
        self.decisions[s].load(Relaxed)
    }
}

impl proxy_core::metrics::RenderMetrics for ZoneCounters {
    fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP proxy_lb_zone_decisions_total Zone decisions by where the zone came from."
        );
        let _ = writeln!(out, "# TYPE proxy_lb_zone_decisions_total counter");
        for (i, s) in ZoneSource::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "proxy_lb_zone_decisions_total{{source=\"{}\"}} {}",
                s.as_str(),
                self.decisions[i].load(Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP proxy_lb_zone_failovers_total Requests served outside their zone, by how far the failover went.");
        let _ = writeln!(out, "# TYPE proxy_lb_zone_failovers_total counter");
        for (i, s) in FailoverStep::ALL.iter().enumerate().skip(1) {
            let _ = writeln!(
                out,
                "proxy_lb_zone_failovers_total{{step=\"{}\"}} {}",
                s.as_str(),
                self.failovers[i].load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP proxy_lb_zone_unavailable_total Requests for which no zone was available."
        );
        let _ = writeln!(out, "# TYPE proxy_lb_zone_unavailable_total counter");
        let _ = writeln!(
            out,
            "proxy_lb_zone_unavailable_total {}",
            self.unavailable.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP proxy_lb_zone_connect_retries_total Requests sent to the next zone of the failover chain after a connect failure."
        );
        let _ = writeln!(out, "# TYPE proxy_lb_zone_connect_retries_total counter");
        let _ = writeln!(
            out,
            "proxy_lb_zone_connect_retries_total {}",
            self.connect_retries.load(Relaxed)
        );
    }
}
