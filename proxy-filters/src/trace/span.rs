//! A finished request span and where it goes: the [`SpanExporter`] trait and the
//! [`LogExporter`] (one JSON line through `tracing`).

use std::{
    fmt,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use super::TraceContextCounters;
use super::{SpanId, TraceId};

/// What the proxy knows of one request, recorded as its span when the response
/// headers come back (or the request fails).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SpanRecord {
    /// The trace the request belongs to.
    pub trace_id: TraceId,
    /// The proxy's span: the `parent-id` the upstream sees.
    pub span_id: SpanId,
    /// The caller's span, when the request came with a valid `traceparent`.
    pub parent_id: Option<SpanId>,
    /// The API: the matched route's name, else the name the layer was given.
    pub api: Option<Arc<str>>,
    /// The consumer an auth filter identified.
    pub consumer: Option<Arc<str>>,
    /// The request method.
    pub method: http::Method,
    /// The request path, without the query (which may carry secrets).
    pub path: String,
    /// The response status; `None` when the request failed without a response.
    pub status: Option<u16>,
    /// When the request reached this layer.
    pub start: SystemTime,
    /// Until the response headers (or the failure).
    pub duration: Duration,
    /// The cluster the matched route sends to.
    pub upstream_cluster: Option<Arc<str>>,
}

impl SpanRecord {
    /// A span with the ids, method and path; the rest empty (status `None`, no
    /// duration), for code that records spans itself and for tests.
    ///
    /// ```
    /// use proxy_filters::trace::{SpanId, SpanRecord, TraceId};
    /// let s = SpanRecord::new(TraceId::random(), SpanId::random(), None, http::Method::GET, "/");
    /// assert_eq!(s.status, None);
    /// ```
    pub fn new(
        trace_id: TraceId,
        span_id: SpanId,
        parent_id: Option<SpanId>,
        method: http::Method,
        path: impl Into<String>,
    ) -> Self {
        Self {
            trace_id,
            span_id,
            parent_id,
            api: None,
            consumer: None,
            method,
            path: path.into(),
            status: None,
            start: SystemTime::now(),
            duration: Duration::ZERO,
            upstream_cluster: None,
        }
    }

    /// The span as one JSON object (ids in lowercase hex, start in Unix
    /// microseconds, duration in microseconds).
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Line<'a> {
            trace_id: String,
            span_id: String,
            parent_id: Option<String>,
            api: Option<&'a str>,
            consumer: Option<&'a str>,
            method: &'a str,
            path: &'a str,
            status: Option<u16>,
            start_unix_us: u128,
            duration_us: u128,
            upstream_cluster: Option<&'a str>,
        }
        let line = Line {
            trace_id: self.trace_id.to_string(),
            span_id: self.span_id.to_string(),
            parent_id: self.parent_id.map(|p| p.to_string()),
            api: self.api.as_deref(),
            consumer: self.consumer.as_deref(),
            method: self.method.as_str(),
            path: &self.path,
            status: self.status,
            start_unix_us: self
                .start
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros()),
            duration_us: self.duration.as_micros(),
            upstream_cluster: self.upstream_cluster.as_deref(),
        };
        serde_json::to_string(&line).unwrap_or_default()
    }
}

/// Where finished, sampled spans go. Called on the request path: an exporter must
/// not block (queue the span and return, or drop and count it).
pub trait SpanExporter: fmt::Debug + Send + Sync + 'static {
    /// Takes one finished span.
    fn export(&self, span: SpanRecord);
}

/// Writes each span as one JSON line through `tracing` (target
/// `proxy_filters::trace::span`, level INFO); the binary's subscriber decides where
/// it goes and whether writing it can wait (use a non-blocking writer).
///
/// ```
/// use std::sync::Arc;
/// use proxy_filters::trace::{LogExporter, SpanExporter, SpanId, SpanRecord, TraceId};
/// let exporter = LogExporter::new(Arc::default());
/// exporter.export(SpanRecord::new(TraceId::random(), SpanId::random(), None, http::Method::GET, "/"));
/// ```
#[derive(Debug, Clone)]
pub struct LogExporter {
    counters: Arc<TraceContextCounters>,
}

impl LogExporter {
    /// An exporter counting the spans it writes in `counters`.
    pub fn new(counters: Arc<TraceContextCounters>) -> Self {
        Self { counters }
    }
}

impl SpanExporter for LogExporter {
    fn export(&self, span: SpanRecord) {
        tracing::info!(target: "proxy_filters::trace::span", "{}", span.to_json());
        self.counters.exported.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_has_the_ids() {
        let trace = TraceId::from_bytes([1; 16]).expect("non-zero");
        let span = SpanId::from_bytes([2; 8]).expect("non-zero");
        let mut s = SpanRecord::new(trace, span, None, http::Method::POST, "/api/x");
        s.status = Some(201);
        s.consumer = Some("alice".into());
        let v: serde_json::Value = serde_json::from_str(&s.to_json()).expect("json");
        assert_eq!(v["trace_id"], "01010101010101010101010101010101");
        assert_eq!(v["span_id"], "0202020202020202");
        assert_eq!(v["parent_id"], serde_json::Value::Null);
        assert_eq!(v["status"], 201);
        assert_eq!(v["consumer"], "alice");
        assert_eq!(v["method"], "POST");
    }
}
