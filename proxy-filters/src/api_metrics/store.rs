//! The per-API, per-consumer series and their Prometheus text.
//!
//! Lookups on the request path read immutable maps through `arc-swap` (no lock); a
//! new API or consumer copies its map once under a mutex, which happens at most
//! `max_consumers` times per API, so the maps are read-mostly by construction.

use std::{
    collections::HashMap,
    fmt::Write as _,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use proxy_core::metrics::{escape_label, RenderMetrics};

/// Upper bounds (seconds) of the latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The consumer label of requests past `max_consumers` distinct consumers.
pub const OTHER_CONSUMER: &str = "other";
/// The consumer label of requests no auth filter identified.
pub const ANONYMOUS_CONSUMER: &str = "anonymous";
/// The API label of requests without a matched route or a configured API.
pub const UNMATCHED_API: &str = "unmatched";
/// Distinct APIs kept at most (routes are bounded by config; this is a backstop).
const MAX_APIS: usize = 10_000;

/// Status classes: `1xx`..`5xx`, and `error` for a request that failed without a
/// response.
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"];

/// One API and consumer's counters and latency histogram.
#[derive(Debug, Default)]
pub struct Series {
    requests: [AtomicU64; 6],
    /// Non-cumulative bucket counts; the last is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Series {
    /// Counts one request: its status (`None`: failed without a response) and how
    /// long it took.
    pub fn record(&self, status: Option<u16>, elapsed: Duration) {
        let class = match status {
            Some(s @ 100..=599) => usize::from(s / 100 - 1),
            _ => 5,
        };
        self.requests[class].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Requests counted, all classes.
    pub fn total(&self) -> u64 {
        self.requests
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Requests counted under `class` (`"2xx"`, `"error"`, ...).
    pub fn requests(&self, class: &str) -> u64 {
        CLASSES
            .iter()
            .position(|c| *c == class)
            .map_or(0, |i| self.requests[i].load(Ordering::Relaxed))
    }
}

/// An immutable map swapped whole on insert, bounded in size.
#[derive(Debug)]
struct BoundedMap<V> {
    map: ArcSwap<HashMap<Arc<str>, Arc<V>>>,
    insert: Mutex<()>,
}

impl<V> Default for BoundedMap<V> {
    fn default() -> Self {
        Self {
            map: ArcSwap::from_pointee(HashMap::new()),
            insert: Mutex::new(()),
        }
    }
}

impl<V: Default> BoundedMap<V> {
    /// The value of `key`, made if the map holds fewer than `max` keys; `None` when
    /// it is full.
    fn get_or_insert(&self, key: &str, max: usize) -> Option<Arc<V>> {
        if let Some(v) = self.map.load().get(key) {
            return Some(v.clone());
        }
        let _guard = self.insert.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.map.load_full();
        if let Some(v) = current.get(key) {
            return Some(v.clone());
        }
        if current.len() >= max {
            return None;
        }
        let mut next = HashMap::clone(&current);
        let made = Arc::new(V::default());
        next.insert(Arc::from(key), made.clone());
        self.map.store(Arc::new(next));
        Some(made)
    }

    /// The entries, sorted by key.
    fn sorted(&self) -> Vec<(Arc<str>, Arc<V>)> {
        let mut v: Vec<_> = self
            .map
            .load()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

/// One API's series: one per consumer (at most the layer's `max_consumers`) and one
/// for the overflow.
#[derive(Debug, Default)]
pub struct ApiSeries {
    consumers: BoundedMap<Series>,
    other: Series,
}

impl ApiSeries {
    /// The series of `consumer` (`None`: `anonymous`), or the overflow series
    /// (`other`) once `max_consumers` distinct consumers are counted.
    pub fn series(&self, consumer: Option<&str>, max_consumers: usize) -> SeriesRef<'_> {
        let name = consumer.unwrap_or(ANONYMOUS_CONSUMER);
        match self.consumers.get_or_insert(name, max_consumers) {
            Some(s) => SeriesRef::Own(s),
            None => SeriesRef::Other(&self.other),
        }
    }
}

/// A consumer's series or the shared overflow series.
#[derive(Debug)]
pub enum SeriesRef<'a> {
    /// A counted consumer's own series.
    Own(Arc<Series>),
    /// The overflow series (`consumer="other"`).
    Other(&'a Series),
}

impl std::ops::Deref for SeriesRef<'_> {
    type Target = Series;
    fn deref(&self) -> &Series {
        match self {
            Self::Own(s) => s,
            Self::Other(s) => s,
        }
    }
}

/// Every API's series: the object kept in the server's metrics registry (under
/// `filters/api_metrics`) and rendered on `/stats/prometheus` as
/// `proxy_filters_api_requests_total{api,consumer,status_class}` and the histogram
/// `proxy_filters_api_request_duration_seconds{api,consumer}`.
#[derive(Debug, Default)]
pub struct ApiMetrics {
    apis: BoundedMap<ApiSeries>,
    unmatched: Arc<ApiSeries>,
}

impl ApiMetrics {
    /// The series of `api` (made on first use), or those of `unmatched` past the
    /// backstop of distinct APIs.
    pub fn api(&self, api: &str) -> Arc<ApiSeries> {
        self.apis
            .get_or_insert(api, MAX_APIS)
            .unwrap_or_else(|| self.unmatched.clone())
    }

    /// The series of requests without an API.
    pub fn unmatched(&self) -> Arc<ApiSeries> {
        self.apis
            .get_or_insert(UNMATCHED_API, MAX_APIS)
            .unwrap_or_else(|| self.unmatched.clone())
    }

    /// Writes both families in Prometheus text format: the series that counted a
    /// request, sorted by API and consumer; nothing before the first request.
    pub fn render_into(&self, out: &mut String) {
        let apis = self.apis.sorted();
        let mut rows: Vec<(&str, Arc<str>, SeriesRef<'_>)> = Vec::new();
        for (api, series) in &apis {
            for (consumer, s) in series.consumers.sorted() {
                rows.push((api, consumer, SeriesRef::Own(s)));
            }
            rows.push((
                api,
                Arc::from(OTHER_CONSUMER),
                SeriesRef::Other(&series.other),
            ));
        }
        rows.retain(|(_, _, s)| s.total() > 0);
        if rows.is_empty() {
            return;
        }
        let each = |f: &mut dyn FnMut(&str, &str, &Series)| {
            for (api, consumer, s) in &rows {
                f(api, consumer, s);
            }
        };
        let family = "proxy_filters_api_requests_total";
        let _ = writeln!(
            out,
            "# HELP {family} Requests per API and consumer, by status class."
        );
        let _ = writeln!(out, "# TYPE {family} counter");
        each(&mut |api, consumer, s| {
            let labels = labels(api, consumer);
            for (i, class) in CLASSES.iter().enumerate() {
                let v = s.requests[i].load(Ordering::Relaxed);
                let _ = writeln!(out, "{family}{{{labels},status_class=\"{class}\"}} {v}");
            }
        });
        let family = "proxy_filters_api_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {family} Time to the response headers per API and consumer."
        );
        let _ = writeln!(out, "# TYPE {family} histogram");
        each(&mut |api, consumer, s| {
            let labels = labels(api, consumer);
            let mut cumulative = 0u64;
            for (i, upper) in LATENCY_BUCKETS.iter().enumerate() {
                cumulative += s.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "{family}_bucket{{{labels},le=\"{upper}\"}} {cumulative}"
                );
            }
            cumulative += s.buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
            let _ = writeln!(out, "{family}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
            let sum = s.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(out, "{family}_sum{{{labels}}} {sum}");
            let _ = writeln!(out, "{family}_count{{{labels}}} {cumulative}");
        });
    }
}

fn labels(api: &str, consumer: &str) -> String {
    format!(
        "api=\"{}\",consumer=\"{}\"",
        escape_label(api),
        escape_label(consumer)
    )
}

impl RenderMetrics for ApiMetrics {
    fn render(&self, out: &mut String) {
        self.render_into(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumers_past_the_bound_count_as_other() {
        let m = ApiMetrics::default();
        let api = m.api("echo");
        for name in ["a", "b", "c", "a"] {
            api.series(Some(name), 2)
                .record(Some(200), Duration::from_millis(3));
        }
        api.series(None, 2)
            .record(Some(503), Duration::from_secs(20));
        let mut out = String::new();
        m.render_into(&mut out);
        let line = |l: &str| out.lines().any(|x| x == l);
        assert!(line("proxy_filters_api_requests_total{api=\"echo\",consumer=\"a\",status_class=\"2xx\"} 2"), "{out}");
        assert!(line("proxy_filters_api_requests_total{api=\"echo\",consumer=\"b\",status_class=\"2xx\"} 1"), "{out}");
        assert!(line("proxy_filters_api_requests_total{api=\"echo\",consumer=\"other\",status_class=\"2xx\"} 1"), "{out}");
        assert!(line("proxy_filters_api_requests_total{api=\"echo\",consumer=\"other\",status_class=\"5xx\"} 1"), "anonymous is past the bound too: {out}");
        assert!(!out.contains("consumer=\"c\""), "{out}");
        assert!(line("proxy_filters_api_request_duration_seconds_bucket{api=\"echo\",consumer=\"a\",le=\"0.0025\"} 0"), "{out}");
        assert!(line("proxy_filters_api_request_duration_seconds_bucket{api=\"echo\",consumer=\"a\",le=\"0.005\"} 2"), "{out}");
        assert!(line("proxy_filters_api_request_duration_seconds_bucket{api=\"echo\",consumer=\"other\",le=\"10\"} 1"), "{out}");
        assert!(line("proxy_filters_api_request_duration_seconds_bucket{api=\"echo\",consumer=\"other\",le=\"+Inf\"} 2"), "{out}");
        assert!(
            line("proxy_filters_api_request_duration_seconds_count{api=\"echo\",consumer=\"a\"} 2"),
            "{out}"
        );
        assert_eq!(out.matches("# TYPE").count(), 2);
    }

    #[test]
    fn only_series_that_counted_are_rendered() {
        let m = ApiMetrics::default();
        let _ = m.unmatched();
        let mut out = String::new();
        m.render_into(&mut out);
        assert_eq!(out, "", "nothing before the first request");
        m.api("echo")
            .series(Some("a"), 10)
            .record(Some(200), Duration::ZERO);
        m.render_into(&mut out);
        assert!(out.contains("consumer=\"a\""), "{out}");
        assert!(!out.contains("unmatched"), "{out}");
        assert!(!out.contains("consumer=\"other\""), "{out}");
    }

    #[test]
    fn status_classes() {
        let s = Series::default();
        for status in [
            Some(101),
            Some(204),
            Some(302),
            Some(404),
            Some(599),
            None,
            Some(600),
        ] {
            s.record(status, Duration::ZERO);
        }
        assert_eq!(
            CLASSES.map(|c| s.requests(c)),
            [1, 1, 1, 1, 1, 2],
            "600 is not a status: error"
        );
    }
}
