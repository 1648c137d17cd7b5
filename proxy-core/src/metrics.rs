//! Lock-free counters and histograms, and their Prometheus text rendering.
//!
//! Every listener, route, cluster and endpoint owns its stats in an `Arc`, created when
//! the config is built; the request path only does relaxed atomic adds. The admin
//! endpoint walks the live config snapshot to render them, so label sets stay bounded
//! by the config.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

/// Upper bounds of the latency histogram buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const BUCKET_MICROS: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// A cumulative latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; 15],
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BUCKET_MICROS.partition_point(|&b| b < us);
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(us, Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        cumulative += self.buckets[14].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// Request counters of one listener, route, cluster or endpoint.
#[derive(Debug, Default)]
pub struct RequestStats {
    /// Requests started.
    pub(crate) requests: AtomicU64,
    /// Requests in flight.
    pub(crate) active: AtomicU64,
    /// Responses by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    pub(crate) status_classes: [AtomicU64; 5],
    /// Answers the proxy made itself, by reason (see [`crate::ProxyError::reason`]).
    pub(crate) local_errors: LocalErrorCounts,
    /// Time to response headers.
    pub(crate) latency: Histogram,
}

impl RequestStats {
    /// Requests started.
    pub fn requests(&self) -> u64 {
        self.requests.load(Relaxed)
    }

    /// Requests in flight.
    pub fn active(&self) -> u64 {
        self.active.load(Relaxed)
    }
}

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

/// A request counted as started in a [`RequestStats`]. Dropped before
/// [`InFlight::done`] (the caller went away mid-request, a timeout dropped the
/// future), it takes the request out of the in-flight count, so the gauge (and the
/// balancers that read it) never leak.
#[must_use]
#[derive(Debug)]
pub(crate) struct InFlight<'a>(Option<&'a RequestStats>);

impl<'a> InFlight<'a> {
    /// Starts a request in `stats`.
    pub(crate) fn start(stats: &'a RequestStats) -> Self {
        stats.start();
        Self(Some(stats))
    }

    /// Guards a request already started in `stats`.
    pub(crate) fn adopt(stats: &'a RequestStats) -> Self {
        Self(Some(stats))
    }

    /// Guards a request already started in `stats` when `started`, else nothing.
    pub(crate) fn adopt_if(started: bool, stats: &'a RequestStats) -> Self {
        Self(started.then_some(stats))
    }

    /// The request was counted to its end (`RequestStats::finish`).
    pub(crate) fn done(mut self) {
        self.0 = None;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(stats) = self.0 {
            stats.active.fetch_sub(1, Relaxed);
        }
    }
}

/// Counts of proxy-generated answers by reason.
#[derive(Debug, Default)]
pub struct LocalErrorCounts {
    counts: [AtomicU64; 10],
}

const LOCAL_ERROR_REASONS: [&str; 10] = [
    "no_route",
    "no_endpoints",
    "connect_failure",
    "upstream_timeout",
    "overflow",
    "upstream_reset",
    "bad_request",
    "request_timeout",
    "internal",
    "other",
];

impl LocalErrorCounts {
    /// Counts one answer for `reason`.
    pub fn add(&self, reason: &str) {
        let i = LOCAL_ERROR_REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(LOCAL_ERROR_REASONS.len() - 1);
        self.counts[i].fetch_add(1, Relaxed);
    }
    /// The count for `reason`.
    pub fn get(&self, reason: &str) -> u64 {
        LOCAL_ERROR_REASONS
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.counts[i].load(Relaxed))
    }
}

impl RequestStats {
    /// Counts a request start.
    pub fn start(&self) {
        self.requests.fetch_add(1, Relaxed);
        self.active.fetch_add(1, Relaxed);
    }

    /// Counts a response with `status` after `elapsed`.
    pub fn finish(&self, status: u16, elapsed: Duration) {
        self.active.fetch_sub(1, Relaxed);
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        self.status_classes[class].fetch_add(1, Relaxed);
        self.latency.observe(elapsed);
    }

    /// Adds the finished counts of `other` to these (used when a reload replaces a
    /// route, so that counters never go backwards).
    pub fn absorb(&self, other: &RequestStats) {
        self.requests
            .fetch_add(other.requests.load(Relaxed), Relaxed);
        for (a, b) in self.status_classes.iter().zip(&other.status_classes) {
            a.fetch_add(b.load(Relaxed), Relaxed);
        }
        for (a, b) in self
            .local_errors
            .counts
            .iter()
            .zip(&other.local_errors.counts)
        {
            a.fetch_add(b.load(Relaxed), Relaxed);
        }
        for (a, b) in self.latency.buckets.iter().zip(&other.latency.buckets) {
            a.fetch_add(b.load(Relaxed), Relaxed);
        }
        self.latency
            .sum_micros
            .fetch_add(other.latency.sum_micros.load(Relaxed), Relaxed);
    }

    /// Responses counted in the class `class` (1 to 5).
    pub fn status_class(&self, class: usize) -> u64 {
        self.status_classes
            .get(class.wrapping_sub(1))
            .map_or(0, |c| c.load(Relaxed))
    }
}

/// Appends request metric families to `out` in Prometheus text, one family at a time
/// over all `items`; `prefix` is e.g. `proxy_route`, each item's labels e.g.
/// `route="api"`.
pub fn render_requests(out: &mut String, prefix: &str, items: &[(String, &RequestStats)]) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(out, "# TYPE {prefix}_requests_total counter");
    for (l, s) in items {
        let _ = writeln!(
            out,
            "{prefix}_requests_total{{{l}}} {}",
            s.requests.load(Relaxed)
        );
    }
    let _ = writeln!(out, "# TYPE {prefix}_requests_active gauge");
    for (l, s) in items {
        let _ = writeln!(
            out,
            "{prefix}_requests_active{{{l}}} {}",
            s.active.load(Relaxed)
        );
    }
    let _ = writeln!(out, "# TYPE {prefix}_responses_total counter");
    for (l, s) in items {
        for (i, c) in s.status_classes.iter().enumerate() {
            let _ = writeln!(
                out,
                "{prefix}_responses_total{{{l},class=\"{}xx\"}} {}",
                i + 1,
                c.load(Relaxed)
            );
        }
    }
    let _ = writeln!(out, "# TYPE {prefix}_local_responses_total counter");
    for (l, s) in items {
        for (i, reason) in LOCAL_ERROR_REASONS.iter().enumerate() {
            let n = s.local_errors.counts[i].load(Relaxed);
            let _ = writeln!(
                out,
                "{prefix}_local_responses_total{{{l},reason=\"{reason}\"}} {n}"
            );
        }
    }
    let name = format!("{prefix}_request_duration_seconds");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (l, s) in items {
        s.latency.render(out, &name, l);
    }
}

/// Connection counters of one listener or endpoint.
#[derive(Debug, Default)]
pub struct ConnStats {
    /// Connections opened.
    pub(crate) opened: AtomicU64,
    /// Connections open now.
    pub(crate) active: AtomicU64,
    /// Bytes received from the peer.
    pub(crate) rx_bytes: AtomicU64,
    /// Bytes sent to the peer.
    pub(crate) tx_bytes: AtomicU64,
    /// Connections refused or closed by a protective limit.
    pub(crate) rejected: AtomicU64,
}

impl ConnStats {
    /// Counts `n` bytes received from a peer.
    #[inline]
    pub(crate) fn count_rx(&self, n: usize) {
        self.rx_bytes.fetch_add(n as u64, Relaxed);
    }

    /// Counts `n` bytes sent to a peer.
    #[inline]
    pub(crate) fn count_tx(&self, n: usize) {
        self.tx_bytes.fetch_add(n as u64, Relaxed);
    }

    /// Connections opened.
    pub fn opened(&self) -> u64 {
        self.opened.load(Relaxed)
    }

    /// Connections open now.
    pub fn active(&self) -> u64 {
        self.active.load(Relaxed)
    }

    /// Bytes received from peers.
    pub fn rx_bytes(&self) -> u64 {
        self.rx_bytes.load(Relaxed)
    }

    /// Bytes sent to peers.
    pub fn tx_bytes(&self) -> u64 {
        self.tx_bytes.load(Relaxed)
    }

    /// Connections refused or closed by a protective limit.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Relaxed)
    }

    /// Counts an opened connection.
    pub fn open(&self) {
        self.opened.fetch_add(1, Relaxed);
        self.active.fetch_add(1, Relaxed);
    }
    /// Counts a closed connection.
    pub fn close(&self) {
        self.active.fetch_sub(1, Relaxed);
    }

    /// Counts a connection refused or closed by a protective limit.
    pub fn reject(&self) {
        self.rejected.fetch_add(1, Relaxed);
    }
}

/// Appends connection metric families to `out` in Prometheus text.
pub fn render_conns(out: &mut String, prefix: &str, items: &[(String, &ConnStats)]) {
    type Family = (&'static str, &'static str, fn(&ConnStats) -> u64);
    let families: [Family; 5] = [
        ("connections_total", "counter", |s| s.opened.load(Relaxed)),
        ("connections_active", "gauge", |s| s.active.load(Relaxed)),
        ("connections_rejected_total", "counter", |s| {
            s.rejected.load(Relaxed)
        }),
        ("rx_bytes_total", "counter", |s| s.rx_bytes.load(Relaxed)),
        ("tx_bytes_total", "counter", |s| s.tx_bytes.load(Relaxed)),
    ];
    if items.is_empty() {
        return;
    }
    for (family, kind, get) in families {
        let _ = writeln!(out, "# TYPE {prefix}_{family} {kind}");
        for (l, s) in items {
            let _ = writeln!(out, "{prefix}_{family}{{{l}}} {}", get(s));
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"b\"");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.0005\"} 1"));
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.005\"} 2"));
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 3"));
        assert_eq!(h.count(), 3);
    }

    #[test]
    fn status_classes_and_local_errors() {
        let s = RequestStats::default();
        s.start();
        s.finish(503, Duration::from_millis(1));
        s.local_errors.add("connect_failure");
        assert_eq!(s.status_class(5), 1);
        assert_eq!(s.local_errors.get("connect_failure"), 1);
        assert_eq!(s.active.load(Relaxed), 0);
    }
}
