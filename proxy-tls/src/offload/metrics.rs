//! Per-engine counters and their Prometheus rendering.

use super::OffloadEngine;
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

/// Latency bucket bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Counters of one engine: atomics only.
#[derive(Debug, Default)]
pub struct EngineStats {
    outstanding: AtomicUsize,
    operations: AtomicU64,
    failures: AtomicU64,
    refused: AtomicU64,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_ns: AtomicU64,
}

impl EngineStats {
    /// A job was queued.
    pub fn queued(&self) {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
    }

    /// A queued job finished (or was dropped) after `latency` (queueing and running).
    pub fn finished(&self, latency: Duration, ok: bool) {
        self.outstanding.fetch_sub(1, Ordering::Relaxed);
        if ok {
            self.operations.fetch_add(1, Ordering::Relaxed);
        } else {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        let secs = latency.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.latency_sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// A job was refused (engine failed or full).
    pub fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Jobs queued or running.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Jobs completed.
    pub fn operations(&self) -> u64 {
        self.operations.load(Ordering::Relaxed)
    }

    /// Jobs refused.
    pub fn refusals(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// The offload engines in use, rendered as Prometheus text.
#[derive(Debug, Default)]
pub struct OffloadMetrics {
    engines: Mutex<BTreeMap<String, Arc<dyn OffloadEngine>>>,
}

impl OffloadMetrics {
    /// Adds (or replaces) an engine, rendered under its name.
    pub fn track(&self, engine: Arc<dyn OffloadEngine>) {
        if let Ok(mut m) = self.engines.lock() {
            m.insert(engine.name().to_owned(), engine);
        }
    }

    /// Writes the engine families in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let Ok(engines) = self.engines.lock() else {
            return;
        };
        if engines.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP proxy_tls_offload_queue_depth Private-key jobs queued or running on an offload engine.");
        let _ = writeln!(out, "# TYPE proxy_tls_offload_queue_depth gauge");
        for (name, e) in engines.iter() {
            let s = e.stats();
            let _ = writeln!(
                out,
                "proxy_tls_offload_queue_depth{{engine=\"{name}\"}} {}",
                s.outstanding()
            );
        }
        let _ = writeln!(out, "# HELP proxy_tls_offload_operations_total Private-key jobs completed by an offload engine.");
        let _ = writeln!(out, "# TYPE proxy_tls_offload_operations_total counter");
        for (name, e) in engines.iter() {
            let s = e.stats();
            let _ = writeln!(
                out,
                "proxy_tls_offload_operations_total{{engine=\"{name}\"}} {}",
                s.operations()
            );
        }
        let _ = writeln!(
            out,
            "# HELP proxy_tls_offload_failures_total Jobs an engine dropped or refused."
        );
        let _ = writeln!(out, "# TYPE proxy_tls_offload_failures_total counter");
        for (name, e) in engines.iter() {
            let s = e.stats();
            let failed = s.failures.load(Ordering::Relaxed) + s.refusals();
            let _ = writeln!(
                out,
                "proxy_tls_offload_failures_total{{engine=\"{name}\"}} {failed}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP proxy_tls_offload_latency_seconds Time from queueing to completion of a job."
        );
        let _ = writeln!(out, "# TYPE proxy_tls_offload_latency_seconds histogram");
        for (name, e) in engines.iter() {
            let s = e.stats();
            for (i, bound) in BUCKETS.iter().enumerate() {
                let n = s.latency_buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(out, "proxy_tls_offload_latency_seconds_bucket{{engine=\"{name}\",le=\"{bound}\"}} {n}");
            }
            let count = s.latency_count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "proxy_tls_offload_latency_seconds_bucket{{engine=\"{name}\",le=\"+Inf\"}} {count}"
            );
            let sum = s.latency_sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(
                out,
                "proxy_tls_offload_latency_seconds_sum{{engine=\"{name}\"}} {sum}"
            );
            let _ = writeln!(
                out,
                "proxy_tls_offload_latency_seconds_count{{engine=\"{name}\"}} {count}"
            );
        }
    }
}
