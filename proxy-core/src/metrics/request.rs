//! Request stats of a listener, route, cluster or endpoint, and their Prometheus
//! families.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use super::{
    histogram::{HistogramShard, Totals},
    per_worker::{sum, Padded, PerWorker},
};

/// Request counters of one listener, route, cluster or endpoint.
///
/// The counters and the latency histogram are counted in the calling worker's shard
/// (see [`PerWorker`]) and summed when read. The in-flight gauge is per worker too,
/// unless the stats are made [`RequestStats::with_shared_gauge`] because the request
/// path reads it.
#[derive(Debug, Default)]
pub struct RequestStats {
    shards: PerWorker<RequestShard>,
    /// Answers the proxy made itself, by reason (see [`crate::ProxyError::reason`]).
    pub(crate) local_errors: LocalErrorCounts,
    /// The in-flight gauge, when it is one shared atomic rather than per worker.
    shared_active: Option<Box<Padded<AtomicU64>>>,
}

/// The request counts of one worker.
#[derive(Debug, Default)]
struct RequestShard {
    /// Requests started.
    requests: AtomicU64,
    /// Requests started minus requests ended on this worker (wrapping: a request may
    /// end on another worker than it started on), unless the gauge is shared.
    active: AtomicU64,
    /// Responses by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    status_classes: [AtomicU64; 5],
    /// Time to response headers.
    latency: HistogramShard,
}

impl RequestStats {
    /// Stats whose in-flight gauge ([`RequestStats::active`]) is one atomic shared by
    /// all workers rather than a per-worker sum: for stats whose gauge the request path
    /// reads, as an endpoint's, which least-request balancing compares on every pick.
    /// A shared gauge is read with one load; the price is that every start and end of
    /// a request writes the same cache line from every worker.
    pub fn with_shared_gauge() -> Self {
        Self {
            shared_active: Some(Box::default()),
            ..Self::default()
        }
    }

    /// Requests started.
    pub fn requests(&self) -> u64 {
        sum(self.shards.iter().map(|s| &s.requests))
    }

    /// Requests in flight.
    pub fn active(&self) -> u64 {
        match &self.shared_active {
            Some(active) => active.load(Relaxed),
            // A request that started on one worker and ended on another while the
            // shards were read one by one can make the sum briefly negative.
            None => {
                let n = sum(self.shards.iter().map(|s| &s.active));
                u64::try_from(n as i64).unwrap_or(0)
            }
        }
    }

    /// Responses counted in the class `class` (1 to 5).
    pub fn status_class(&self, class: usize) -> u64 {
        match class.checked_sub(1) {
            Some(i) if i < 5 => sum(self.shards.iter().map(|s| &s.status_classes[i])),
            _ => 0,
        }
    }

    /// The in-flight gauge to count in, given the calling worker's shard.
    #[inline]
    fn gauge<'a>(&'a self, shard: &'a RequestShard) -> &'a AtomicU64 {
        match &self.shared_active {
            Some(active) => active,
            None => &shard.active,
        }
    }

    /// Counts a request start.
    #[inline]
    pub fn start(&self) {
        let shard = self.shards.local();
        shard.requests.fetch_add(1, Relaxed);
        self.gauge(shard).fetch_add(1, Relaxed);
    }

    /// Counts a response with `status` after `elapsed`.
    #[inline]
    pub fn finish(&self, status: u16, elapsed: Duration) {
        let shard = self.shards.local();
        self.gauge(shard).fetch_sub(1, Relaxed);
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        shard.status_classes[class].fetch_add(1, Relaxed);
        shard.latency.observe(elapsed);
    }

    /// Takes a started request out of the in-flight count without a response.
    pub(crate) fn abandon(&self) {
        self.gauge(self.shards.local()).fetch_sub(1, Relaxed);
    }

    /// Adds the finished counts of `other` to these (used when a reload replaces a
    /// route, so that counters never go backwards).
    pub fn absorb(&self, other: &RequestStats) {
        let totals = other.totals();
        let shard = self.shards.local();
        shard.requests.fetch_add(totals.requests, Relaxed);
        for (a, b) in shard.status_classes.iter().zip(totals.status_classes) {
            a.fetch_add(b, Relaxed);
        }
        shard.latency.add_totals(&totals.latency);
        let errors = self.local_errors.0.local();
        for (a, b) in errors.iter().zip(totals.local_errors) {
            a.fetch_add(b, Relaxed);
        }
    }

    /// Requests started, per shard.
    #[cfg(test)]
    pub(super) fn requests_per_shard(&self) -> Vec<u64> {
        self.shards
            .iter()
            .map(|s| s.requests.load(Relaxed))
            .collect()
    }

    /// Every count, summed over workers.
    fn totals(&self) -> RequestTotals {
        let mut t = RequestTotals {
            active: self.active(),
            local_errors: self.local_errors.totals(),
            ..RequestTotals::default()
        };
        for shard in self.shards.iter() {
            t.requests = t.requests.wrapping_add(shard.requests.load(Relaxed));
            for (a, b) in t.status_classes.iter_mut().zip(&shard.status_classes) {
                *a = a.wrapping_add(b.load(Relaxed));
            }
            t.latency.add(&shard.latency);
        }
        t
    }
}

/// The counts of a [`RequestStats`] summed over workers.
#[derive(Debug, Default)]
struct RequestTotals {
    requests: u64,
    active: u64,
    status_classes: [u64; 5],
    local_errors: [u64; REASONS],
    latency: Totals,
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
            stats.abandon();
        }
    }
}

/// Counts of proxy-generated answers by reason, per worker.
#[derive(Debug, Default)]
pub struct LocalErrorCounts(PerWorker<[AtomicU64; REASONS]>);

/// How many reasons local answers are counted under (the last is `other`).
const REASONS: usize = 14;

const LOCAL_ERROR_REASONS: [&str; REASONS] = [
    "no_route",
    "no_endpoints",
    "connect_failure",
    "upstream_timeout",
    "overflow",
    "upstream_reset",
    "upstream_protocol_error",
    "bad_request",
    "request_timeout",
    "internal",
    "body_too_large",
    "response_too_large",
    "forwarding_loop",
    "other",
];

impl LocalErrorCounts {
    /// Counts one answer for `reason`.
    pub fn add(&self, reason: &str) {
        let i = LOCAL_ERROR_REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(LOCAL_ERROR_REASONS.len() - 1);
        self.0.local()[i].fetch_add(1, Relaxed);
    }

    /// The count for `reason`.
    pub fn get(&self, reason: &str) -> u64 {
        LOCAL_ERROR_REASONS
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| sum(self.0.iter().map(|s| &s[i])))
    }

    fn totals(&self) -> [u64; REASONS] {
        let mut t = [0u64; REASONS];
        for shard in self.0.iter() {
            for (a, b) in t.iter_mut().zip(shard) {
                *a = a.wrapping_add(b.load(Relaxed));
            }
        }
        t
    }
}

/// Appends request metric families to `out` in Prometheus text, one family at a time
/// over all `items`; `prefix` is e.g. `proxy_route`, each item's labels e.g.
/// `route="api"`.
pub fn render_requests(out: &mut String, prefix: &str, items: &[(String, &RequestStats)]) {
    if items.is_empty() {
        return;
    }
    let items: Vec<_> = items.iter().map(|(l, s)| (l, s.totals())).collect();
    let _ = writeln!(out, "# TYPE {prefix}_requests_total counter");
    for (l, t) in &items {
        let _ = writeln!(out, "{prefix}_requests_total{{{l}}} {}", t.requests);
    }
    let _ = writeln!(out, "# TYPE {prefix}_requests_active gauge");
    for (l, t) in &items {
        let _ = writeln!(out, "{prefix}_requests_active{{{l}}} {}", t.active);
    }
    let _ = writeln!(out, "# TYPE {prefix}_responses_total counter");
    for (l, t) in &items {
        for (i, n) in t.status_classes.iter().enumerate() {
            let _ = writeln!(
                out,
                "{prefix}_responses_total{{{l},class=\"{}xx\"}} {n}",
                i + 1
            );
        }
    }
    let _ = writeln!(out, "# TYPE {prefix}_local_responses_total counter");
    for (l, t) in &items {
        for (reason, n) in LOCAL_ERROR_REASONS.iter().zip(t.local_errors) {
            let _ = writeln!(
                out,
                "{prefix}_local_responses_total{{{l},reason=\"{reason}\"}} {n}"
            );
        }
    }
    let name = format!("{prefix}_request_duration_seconds");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (l, t) in &items {
        t.latency.render(out, &name, l);
    }
}
