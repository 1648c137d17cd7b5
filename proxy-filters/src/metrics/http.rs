//! Counters of the HTTP filters: fault, mirror, rbac, local_rate_limit, access_log.

use super::{sample, Counter, CounterSet, Gauge, Sample};

/// Fault injection counters.
#[derive(Debug, Default)]
pub struct FaultCounters {
    /// Requests seen.
    pub requests: Counter,
    /// Delays injected.
    pub delays: Counter,
    /// Aborts injected.
    pub aborts: Counter,
}

impl CounterSet for FaultCounters {
    fn samples(&self, out: &mut Vec<Sample>) {
        sample!(
            out,
            "proxy_filters_fault_requests_total",
            "Requests seen by the fault filter.",
            "counter",
            "",
            self.requests.get()
        );
        sample!(
            out,
            "proxy_filters_fault_injected_total",
            "Faults injected.",
            "counter",
            "kind=\"delay\"",
            self.delays.get()
        );
        sample!(
            out,
            "proxy_filters_fault_injected_total",
            "Faults injected.",
            "counter",
            "kind=\"abort\"",
            self.aborts.get()
        );
    }
}

/// Traffic mirroring counters.
#[derive(Debug, Default)]
pub struct MirrorCounters {
    /// Copies sent to the shadow cluster.
    pub sent: Counter,
    /// Copies the shadow answered (any status).
    pub answered: Counter,
    /// Copies that failed (connect, reset, timeout).
    pub failed: Counter,
    /// Sampled requests not mirrored: body larger than the cap.
    pub skipped_body: Counter,
    /// Sampled requests not mirrored: too many mirrors in flight.
    pub skipped_in_flight: Counter,
    /// Sampled requests not mirrored: the client body ended early or failed.
    pub skipped_incomplete: Counter,
    /// Mirrors in flight.
    pub in_flight: Gauge,
}

impl CounterSet for MirrorCounters {
    fn samples(&self, out: &mut Vec<Sample>) {
        sample!(
            out,
            "proxy_filters_mirror_sent_total",
            "Request copies sent to the shadow cluster.",
            "counter",
            "",
            self.sent.get()
        );
        sample!(
            out,
            "proxy_filters_mirror_results_total",
            "Outcomes of request copies.",
            "counter",
            "result=\"answered\"",
            self.answered.get()
        );
        sample!(
            out,
            "proxy_filters_mirror_results_total",
            "Outcomes of request copies.",
            "counter",
            "result=\"failed\"",
            self.failed.get()
        );
        sample!(
            out,
            "proxy_filters_mirror_skipped_total",
            "Sampled requests not mirrored.",
            "counter",
            "reason=\"body_too_large\"",
            self.skipped_body.get()
        );
        sample!(
            out,
            "proxy_filters_mirror_skipped_total",
            "Sampled requests not mirrored.",
            "counter",
            "reason=\"in_flight_cap\"",
            self.skipped_in_flight.get()
        );
        sample!(
            out,
            "proxy_filters_mirror_skipped_total",
            "Sampled requests not mirrored.",
            "counter",
            "reason=\"body_incomplete\"",
            self.skipped_incomplete.get()
        );
        sample!(
            out,
            "proxy_filters_mirror_in_flight",
            "Request copies in flight.",
            "gauge",
            "",
            self.in_flight.get()
        );
    }
}

/// RBAC decision counters.
#[derive(Debug, Default)]
pub struct RbacCounters {
    /// Requests allowed.
    pub allowed: Counter,
    /// Requests denied.
    pub denied: Counter,
    /// Requests a shadow-mode filter would have denied (and let through).
    pub shadow_denied: Counter,
    /// Requests a shadow-mode filter would have allowed.
    pub shadow_allowed: Counter,
}

impl CounterSet for RbacCounters {
    fn samples(&self, out: &mut Vec<Sample>) {
        sample!(
            out,
            "proxy_filters_rbac_decisions_total",
            "RBAC decisions.",
            "counter",
            "decision=\"allowed\"",
            self.allowed.get()
        );
        sample!(
            out,
            "proxy_filters_rbac_decisions_total",
            "RBAC decisions.",
            "counter",
            "decision=\"denied\"",
            self.denied.get()
        );
        sample!(
            out,
            "proxy_filters_rbac_decisions_total",
            "RBAC decisions.",
            "counter",
            "decision=\"shadow_allowed\"",
            self.shadow_allowed.get()
        );
        sample!(
            out,
            "proxy_filters_rbac_decisions_total",
            "RBAC decisions.",
            "counter",
            "decision=\"shadow_denied\"",
            self.shadow_denied.get()
        );
    }
}

/// Local rate limit counters.
#[derive(Debug, Default)]
pub struct LocalRateLimitCounters {
    /// Requests admitted.
    pub allowed: Counter,
    /// Requests answered 429.
    pub limited: Counter,
    /// Requests whose key found no room in the key table (`overflow: shared_bucket`:
    /// limited by the shared overflow bucket instead; `reject`: refused).
    pub overflow: Counter,
    /// Keys evicted to make room for new ones (`overflow: evict_lru`).
    pub evicted: Counter,
    /// The key tables behind the keys gauge.
    pub(crate) tables: crate::local_rate_limit::KeyTables,
}

impl LocalRateLimitCounters {
    /// Keys tracked by the keyed limiters of the running config: a limiter replaced by
    /// a reload no longer counts; each counts at most its `max_keys`.
    pub fn keys(&self) -> usize {
        self.tables.keys()
    }
}

impl CounterSet for LocalRateLimitCounters {
    fn samples(&self, out: &mut Vec<Sample>) {
        sample!(
            out,
            "proxy_filters_local_rate_limit_decisions_total",
            "Local rate limit decisions.",
            "counter",
            "decision=\"allowed\"",
            self.allowed.get()
        );
        sample!(
            out,
            "proxy_filters_local_rate_limit_decisions_total",
            "Local rate limit decisions.",
            "counter",
            "decision=\"limited\"",
            self.limited.get()
        );
        sample!(
            out,
            "proxy_filters_local_rate_limit_overflow_total",
            "Requests whose key found the key table full: limited by the shared overflow bucket, or refused.",
            "counter",
            "",
            self.overflow.get()
        );
        sample!(
            out,
            "proxy_filters_local_rate_limit_evictions_total",
            "Keys evicted (least recently used) to make room for new keys.",
            "counter",
            "",
            self.evicted.get()
        );
        sample!(
            out,
            "proxy_filters_local_rate_limit_keys",
            "Keys tracked by the keyed limiters of the running config.",
            "gauge",
            "",
            self.keys()
        );
    }
}

/// Access log counters.
#[derive(Debug, Default)]
pub struct AccessLogCounters {
    /// Lines written.
    pub written: Counter,
    /// Lines dropped because the writer fell behind.
    pub dropped: Counter,
    /// Failed writes.
    pub errors: Counter,
}

impl CounterSet for AccessLogCounters {
    fn samples(&self, out: &mut Vec<Sample>) {
        sample!(
            out,
            "proxy_filters_access_log_lines_total",
            "Access log lines.",
            "counter",
            "result=\"written\"",
            self.written.get()
        );
        sample!(
            out,
            "proxy_filters_access_log_lines_total",
            "Access log lines.",
            "counter",
            "result=\"dropped\"",
            self.dropped.get()
        );
        sample!(
            out,
            "proxy_filters_access_log_write_errors_total",
            "Failed access log writes.",
            "counter",
            "",
            self.errors.get()
        );
    }
}
