//! Counters of every filter, rendered as Prometheus text under `proxy_filters_*`.
//!
//! Each filter kind keeps one [`FilterMetrics`] (obtained from the build context, so
//! counters survive reloads) holding one counter set per configured filter `name`;
//! the filter's layer holds its `Arc` set and only touches atomics on the request
//! path. Rendering groups samples by family, so each family appears once.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        atomic::{AtomicI64, AtomicU64, Ordering},
        Arc, RwLock,
    },
};

/// One rendered value.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The metric family, e.g. `proxy_filters_rbac_decisions_total`.
    pub family: &'static str,
    /// Its help text.
    pub help: &'static str,
    /// `counter` or `gauge`.
    pub kind: &'static str,
    /// Labels besides `filter`, already formatted (`decision="denied"`), or empty.
    pub labels: &'static str,
    /// The value.
    pub value: f64,
}

/// A filter's counters: atomics updated on the request path, read when rendering.
pub trait CounterSet: Default + Send + Sync + 'static {
    /// Appends this set's current values.
    fn samples(&self, out: &mut Vec<Sample>);
}

/// The counter sets of one filter kind, by filter name.
#[derive(Debug)]
pub struct FilterMetrics<C> {
    sets: RwLock<BTreeMap<String, Arc<C>>>,
}

impl<C> Default for FilterMetrics<C> {
    fn default() -> Self {
        Self {
            sets: RwLock::new(BTreeMap::new()),
        }
    }
}

impl<C: CounterSet> FilterMetrics<C> {
    /// The counters of the filter called `name` (created on first use; the same `Arc`
    /// afterwards). Called at load, never per request.
    pub fn get(&self, name: &str) -> Arc<C> {
        if let Some(c) = self
            .sets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return c.clone();
        }
        self.sets
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// Writes every family in Prometheus text format.
    pub fn render_into(&self, out: &mut String) {
        let sets = self.sets.read().unwrap_or_else(|e| e.into_inner());
        let mut by_family: Vec<(Sample, Vec<(String, f64)>)> = Vec::new();
        let mut buf = Vec::new();
        for (name, set) in sets.iter() {
            buf.clear();
            set.samples(&mut buf);
            for s in &buf {
                let labels = if s.labels.is_empty() {
                    format!("filter=\"{}\"", escape(name))
                } else {
                    format!("filter=\"{}\",{}", escape(name), s.labels)
                };
                match by_family.iter_mut().find(|(f, _)| f.family == s.family) {
                    Some((_, v)) => v.push((labels, s.value)),
                    None => by_family.push((s.clone(), vec![(labels, s.value)])),
                }
            }
        }
        for (family, values) in by_family {
            let _ = writeln!(out, "# HELP {} {}", family.family, family.help);
            let _ = writeln!(out, "# TYPE {} {}", family.family, family.kind);
            for (labels, v) in values {
                let _ = writeln!(out, "{}{{{labels}}} {v}", family.family);
            }
        }
    }
}

impl<C: CounterSet> proxy_core::metrics::RenderMetrics for FilterMetrics<C> {
    fn render(&self, out: &mut String) {
        self.render_into(out);
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Removes one.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

macro_rules! sample {
    ($out:ident, $family:literal, $help:literal, $kind:literal, $labels:literal, $v:expr) => {
        $out.push(Sample {
            family: $family,
            help: $help,
            kind: $kind,
            labels: $labels,
            value: $v as f64,
        })
    };
}

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
pub struct RateLimitCounters {
    /// Requests admitted.
    pub allowed: Counter,
    /// Requests answered 429.
    pub limited: Counter,
    /// Requests whose key found no room in the key table (limited by the shared
    /// overflow bucket instead).
    pub overflow: Counter,
    /// Keys tracked.
    pub keys: Gauge,
}

impl CounterSet for RateLimitCounters {
    fn samples(&self, out: &mut Vec<Sample>) {
        sample!(
            out,
            "proxy_filters_rate_limit_decisions_total",
            "Local rate limit decisions.",
            "counter",
            "decision=\"allowed\"",
            self.allowed.get()
        );
        sample!(
            out,
            "proxy_filters_rate_limit_decisions_total",
            "Local rate limit decisions.",
            "counter",
            "decision=\"limited\"",
            self.limited.get()
        );
        sample!(
            out,
            "proxy_filters_rate_limit_overflow_total",
            "Requests limited by the shared overflow bucket because the key table was full.",
            "counter",
            "",
            self.overflow.get()
        );
        sample!(
            out,
            "proxy_filters_rate_limit_keys",
            "Keys tracked by keyed limiters.",
            "gauge",
            "",
            self.keys.get()
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

/// TCP proxy counters.
#[derive(Debug, Default)]
pub struct TcpProxyCounters {
    /// Connections proxied.
    pub connections: Counter,
    /// Connections open now.
    pub active: Gauge,
    /// Upstream connects that failed (or found no endpoint).
    pub connect_failures: Counter,
    /// Connections closed by the idle timeout.
    pub idle_timeouts: Counter,
    /// Connections ended by an I/O error.
    pub errors: Counter,
    /// Bytes from downstream to upstream.
    pub bytes_up: Counter,
    /// Bytes from upstream to downstream.
    pub bytes_down: Counter,
}

impl CounterSet for TcpProxyCounters {
    fn samples(&self, out: &mut Vec<Sample>) {
        sample!(
            out,
            "proxy_filters_tcp_connections_total",
            "Connections proxied at L4.",
            "counter",
            "",
            self.connections.get()
        );
        sample!(
            out,
            "proxy_filters_tcp_active_connections",
            "L4 connections open.",
            "gauge",
            "",
            self.active.get()
        );
        sample!(
            out,
            "proxy_filters_tcp_connect_failures_total",
            "Upstream connects that failed.",
            "counter",
            "",
            self.connect_failures.get()
        );
        sample!(
            out,
            "proxy_filters_tcp_closed_total",
            "L4 connections closed abnormally.",
            "counter",
            "reason=\"idle_timeout\"",
            self.idle_timeouts.get()
        );
        sample!(
            out,
            "proxy_filters_tcp_closed_total",
            "L4 connections closed abnormally.",
            "counter",
            "reason=\"error\"",
            self.errors.get()
        );
        sample!(
            out,
            "proxy_filters_tcp_bytes_total",
            "Bytes copied at L4.",
            "counter",
            "direction=\"upstream\"",
            self.bytes_up.get()
        );
        sample!(
            out,
            "proxy_filters_tcp_bytes_total",
            "Bytes copied at L4.",
            "counter",
            "direction=\"downstream\"",
            self.bytes_down.get()
        );
    }
}

/// Connection limit counters.
#[derive(Debug, Default)]
pub struct ConnLimitCounters {
    /// Connections admitted.
    pub accepted: Counter,
    /// Connections refused: the listener limit.
    pub refused_total: Counter,
    /// Connections refused: the per-source-IP limit.
    pub refused_source: Counter,
    /// Connections open now.
    pub active: Gauge,
}

impl CounterSet for ConnLimitCounters {
    fn samples(&self, out: &mut Vec<Sample>) {
        sample!(
            out,
            "proxy_filters_conn_limit_accepted_total",
            "Connections admitted by the connection limit.",
            "counter",
            "",
            self.accepted.get()
        );
        sample!(
            out,
            "proxy_filters_conn_limit_refused_total",
            "Connections refused by the connection limit.",
            "counter",
            "reason=\"listener\"",
            self.refused_total.get()
        );
        sample!(
            out,
            "proxy_filters_conn_limit_refused_total",
            "Connections refused by the connection limit.",
            "counter",
            "reason=\"source_ip\"",
            self.refused_source.get()
        );
        sample!(
            out,
            "proxy_filters_conn_limit_active",
            "Connections open under the connection limit.",
            "gauge",
            "",
            self.active.get()
        );
    }
}

/// Connection fault counters.
#[derive(Debug, Default)]
pub struct ConnFaultCounters {
    /// Connections seen.
    pub connections: Counter,
    /// Connections delayed.
    pub delays: Counter,
    /// Connections reset.
    pub resets: Counter,
}

impl CounterSet for ConnFaultCounters {
    fn samples(&self, out: &mut Vec<Sample>) {
        sample!(
            out,
            "proxy_filters_conn_fault_connections_total",
            "Connections seen by the connection fault filter.",
            "counter",
            "",
            self.connections.get()
        );
        sample!(
            out,
            "proxy_filters_conn_fault_injected_total",
            "Connection faults injected.",
            "counter",
            "kind=\"delay\"",
            self.delays.get()
        );
        sample!(
            out,
            "proxy_filters_conn_fault_injected_total",
            "Connection faults injected.",
            "counter",
            "kind=\"reset\"",
            self.resets.get()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_once() {
        let m = FilterMetrics::<RbacCounters>::default();
        m.get("a").denied.inc();
        m.get("b").allowed.add(2);
        assert!(Arc::ptr_eq(&m.get("a"), &m.get("a")));
        let mut out = String::new();
        m.render_into(&mut out);
        assert_eq!(
            out.matches("# TYPE proxy_filters_rbac_decisions_total")
                .count(),
            1
        );
        assert!(
            out.contains("proxy_filters_rbac_decisions_total{filter=\"a\",decision=\"denied\"} 1")
        );
        assert!(
            out.contains("proxy_filters_rbac_decisions_total{filter=\"b\",decision=\"allowed\"} 2")
        );
    }
}
