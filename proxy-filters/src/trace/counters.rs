//! The `trace_context` filter's counters: how traces were joined and what became of
//! the spans (`proxy_filters_trace_context_*`).

use crate::metrics::{sample, Counter, CounterSet, Sample};

/// Trace context counters.
#[derive(Debug, Default)]
pub struct TraceContextCounters {
    /// Requests that continued the caller's trace (a valid `traceparent`).
    pub continued: Counter,
    /// Requests without a `traceparent`: a new trace.
    pub started: Counter,
    /// Requests with an invalid `traceparent`: a new trace.
    pub restarted: Counter,
    /// Spans handed to the exporter's destination (logged, or sent to the collector).
    pub exported: Counter,
    /// Spans dropped because the export queue was full.
    pub dropped: Counter,
    /// Spans whose export failed (collector unreachable or refusing).
    pub failed: Counter,
}

impl CounterSet for TraceContextCounters {
    fn samples(&self, out: &mut Vec<Sample>) {
        macro_rules! requests {
            ($labels:literal, $v:expr) => {
                sample!(
                    out,
                    "proxy_filters_trace_context_requests_total",
                    "Requests by how their trace was joined.",
                    "counter",
                    $labels,
                    $v
                )
            };
        }
        macro_rules! spans {
            ($labels:literal, $v:expr) => {
                sample!(
                    out,
                    "proxy_filters_trace_context_spans_total",
                    "Sampled spans by what became of them.",
                    "counter",
                    $labels,
                    $v
                )
            };
        }
        requests!("trace=\"continued\"", self.continued.get());
        requests!("trace=\"started\"", self.started.get());
        requests!("trace=\"restarted\"", self.restarted.get());
        spans!("result=\"exported\"", self.exported.get());
        spans!("result=\"dropped\"", self.dropped.get());
        spans!("result=\"failed\"", self.failed.get());
    }
}
