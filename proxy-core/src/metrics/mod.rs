//! Lock-free counters and histograms, and their Prometheus text rendering.
//!
//! Every listener, route, cluster and endpoint owns its stats in an `Arc`, created when
//! the config is built. The admin endpoint walks the live config snapshot to render
//! them, so label sets stay bounded by the config.
//!
//! # Counted per worker, summed when read
//!
//! A request updates the stats of its listener, route, cluster and endpoint: some
//! twenty counters. Shared by all workers, each of those adds would move a cache line
//! between cores. So the counters and histograms are [`PerWorker`]: one padded shard
//! per worker, chosen by [`crate::worker::index`]; a worker only ever writes its own
//! shard (one relaxed add per counter, as with a single atomic), and a read (a
//! scrape, an admin page, a test) sums the shards. A read while requests run sees
//! each shard at a slightly different instant, as it would see separate atomics.
//!
//! The number of shards is fixed when the stats are created: the server sets it to
//! its worker count (at most 64) before it builds its config; stats created
//! elsewhere (a test, an embedding application) get one per CPU, at most 16. With
//! more workers than shards, worker `i` counts in shard `i % shards`: workers share,
//! the counts stay exact. Threads the server did not start count in shard 0.
//!
//! Gauges that the request path reads stay one shared atomic, cheap to read: the
//! open-connections count of a [`ConnStats`] (the accept loop compares it with
//! `max_connections`) and the in-flight count of an endpoint's [`RequestStats`]
//! ([`RequestStats::with_shared_gauge`]; least-request balancing compares it on
//! every pick). The in-flight counts of listeners, routes and clusters, read only by
//! scrapes, are per worker.

mod carry;
mod conn;
mod histogram;
mod per_worker;
mod request;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub use self::{
    carry::{carried_samples, CarriedValue, MetricOffsets},
    conn::{render_conns, ConnStats},
    histogram::{Histogram, LATENCY_BUCKETS},
    per_worker::{Counter, PerWorker},
    request::{render_requests, LocalErrorCounts, RequestStats},
};
pub(crate) use self::{per_worker::set_shard_count, request::InFlight};

/// Whether a log line may be written now: at most 10 per second per `slot` (a second
/// and a count packed in one atomic), so a failing upstream under load logs why
/// without flooding. Lock-free.
pub(crate) fn log_allowed(slot: &AtomicU64) -> bool {
    const PER_SECOND: u64 = 10;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let cur = slot.load(Relaxed);
    let (second, count) = (cur >> 16, cur & 0xffff);
    let next = if second == now {
        if count >= PER_SECOND {
            return false;
        }
        cur + 1
    } else {
        (now << 16) | 1
    };
    slot.compare_exchange(cur, next, Relaxed, Relaxed).is_ok()
}

/// Escapes a label value for the Prometheus text format.
pub fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Metrics of a capability crate, rendered on the admin `/stats/prometheus` page
/// after the core's. Obtained with [`crate::registry::BuildContext::metrics`].
///
/// # Example
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
/// use proxy_core::metrics::RenderMetrics;
///
/// #[derive(Debug, Default)]
/// struct Denials(AtomicU64);
/// impl RenderMetrics for Denials {
///     fn render(&self, out: &mut String) {
///         out.push_str("# TYPE proxy_example_denials_total counter\n");
///         out.push_str(&format!("proxy_example_denials_total {}\n", self.0.load(Relaxed)));
///     }
/// }
/// ```
pub trait RenderMetrics: Send + Sync + 'static {
    /// Appends Prometheus text exposition lines (with `# TYPE` lines) to `out`.
    fn render(&self, out: &mut String);
}
