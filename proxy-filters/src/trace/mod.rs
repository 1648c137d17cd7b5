//! W3C Trace Context propagation with one span per request (`typed: trace_context`).
//!
//! A request's `traceparent` ([W3C Trace Context level 1]) is parsed: version `00`
//! exactly, a higher version by the spec's forward-compatibility rules; uppercase
//! hex, an all-zero id, version `ff`, a repeated header or any other malformed value
//! starts a new trace, as the spec asks. The proxy then starts its own span with a
//! new span id and sends the upstream `traceparent: 00-<trace-id>-<proxy span
//! id>-<flags>`, keeping the caller's sampled flag; a new trace is sampled for
//! `sample_percent` of requests (0-100, default 100). `tracestate` passes unchanged
//! when valid (at most 32 list members, keys and values per the spec's grammar, no
//! key twice) and is dropped when malformed or when `traceparent` was invalid.
//!
//! The request carries an [`ActiveSpan`] extension for the filters after this one;
//! `response_header` (e.g. `x-trace-id`) returns the trace id to the client. For the
//! access log: a log placed after this filter sees the rewritten request header
//! (`%REQ(traceparent)%`), any log sees `%RESP(x-trace-id)%` when `response_header`
//! is set, which is how the api-gateway logs it.
//!
//! A sampled request's span ([`SpanRecord`]: ids, parent, API, consumer, method,
//! path, status, start, duration to the response headers, upstream cluster) goes to
//! the `exporter`: `log` ([`LogExporter`], one JSON line through `tracing`), `{otlp:
//! {...}}` (an OpenTelemetry OTLP/HTTP collector, with the cargo feature `otel`; see
//! [`OtlpConfig`]), or anything implementing [`SpanExporter`] in code. Without
//! `exporter` the filter only propagates. Export never blocks the request: the OTLP
//! exporter queues into a bounded queue, batches on its own thread, and counts what
//! it drops when full.
//!
//! The API is the matched route's name (the listener's filters see it on the
//! response), else the route's own name for a route's filter. The consumer is the
//! one an auth filter put on the request ([`crate::auth::Consumer`]) when this filter
//! runs after it, or the one [`crate::api_metrics`] copies to the response when that
//! filter runs after the auth filter.
//!
//! Metrics: `proxy_filters_trace_context_requests_total{trace="continued|started|restarted"}`,
//! `proxy_filters_trace_context_spans_total{result="exported|dropped|failed"}`.
//!
//! ```yaml
//! http_filters:
//!   - typed: trace_context
//!     config:
//!       sample_percent: 10            # of new traces; a caller's flag is kept
//!       response_header: x-trace-id
//!       exporter: log                 # or { otlp: { endpoint: "http://127.0.0.1:4318/v1/traces" } }
//! ```
//!
//! [W3C Trace Context level 1]: https://www.w3.org/TR/trace-context/

mod context;
mod counters;
#[cfg(feature = "otel")]
mod otlp;
mod service;
mod span;

use std::{num::NonZeroUsize, sync::Arc, time::Duration};

use http::HeaderName;
use serde::{Deserialize, Serialize};
use tower_layer::Layer;

pub use context::{
    tracestate_is_valid, SpanId, TraceId, TraceParent, MAX_TRACESTATE_MEMBERS, TRACEPARENT,
    TRACESTATE,
};
pub use counters::TraceContextCounters;
#[cfg(feature = "otel")]
pub use otlp::OtlpExporter;
pub use service::{ResponseFuture, TraceContext};
pub use span::{LogExporter, SpanExporter, SpanRecord};

use crate::{config::Percent, ConfigError};

/// The registered name.
pub const NAME: &str = "trace_context";

/// The `trace_context` filter's section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceContextConfig {
    /// Names this filter in metrics (default: the route's, else the listener's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Share of new traces sampled, 0-100 (default 100); a caller's sampled flag is
    /// always kept.
    #[serde(default)]
    pub sample_percent: Percent,
    /// A response header carrying the trace id to the client (e.g. `x-trace-id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header: Option<String>,
    /// Where sampled spans go; absent: propagation only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exporter: Option<ExporterConfig>,
}

/// A span exporter: `log` or `{otlp: {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExporterConfig {
    /// One JSON line per span through `tracing` ([`LogExporter`]).
    Log,
    /// An OpenTelemetry collector over OTLP/HTTP with protobuf (feature `otel`).
    Otlp(OtlpConfig),
}

/// The OTLP exporter's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// The collector's traces URL, e.g. `http://127.0.0.1:4318/v1/traces`.
    pub endpoint: String,
    /// The `service.name` resource attribute (default `proxy`).
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Spans waiting for export at most; past it spans are dropped and counted
    /// (default 2048).
    #[serde(default = "default_queue_spans")]
    pub queue_spans: NonZeroUsize,
    /// Spans per export request at most (default 512).
    #[serde(default = "default_batch_spans")]
    pub batch_spans: NonZeroUsize,
    /// The longest a span waits for its batch to fill (default 1s).
    #[serde(default = "default_flush_interval", with = "humantime_serde")]
    pub flush_interval: Duration,
    /// The deadline of one export request (default 10s).
    #[serde(default = "default_export_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_service_name() -> String {
    "proxy".to_owned()
}
fn default_queue_spans() -> NonZeroUsize {
    NonZeroUsize::new(2048).unwrap_or(NonZeroUsize::MIN)
}
fn default_batch_spans() -> NonZeroUsize {
    NonZeroUsize::new(512).unwrap_or(NonZeroUsize::MIN)
}
fn default_flush_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_export_timeout() -> Duration {
    Duration::from_secs(10)
}

/// What a request's later filters know of its span, in the request extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveSpan {
    /// The trace.
    pub trace_id: TraceId,
    /// The proxy's span for this request (the upstream's parent).
    pub span_id: SpanId,
    /// Whether the trace is sampled.
    pub sampled: bool,
}

/// Validated settings shared by all clones of the layer.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) sample_per_million: u32,
    pub(crate) response_header: Option<HeaderName>,
    pub(crate) exporter: Option<Arc<dyn SpanExporter>>,
    pub(crate) counters: Arc<TraceContextCounters>,
    pub(crate) api: Option<Arc<str>>,
}

/// Applies [`TraceContext`] to a service.
///
/// # Example
/// ```
/// use proxy_core::{Body, BoxError, HttpRequest};
/// use proxy_filters::trace::{TraceContextConfig, TraceContextLayer, TraceParent};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let cfg = TraceContextConfig {
///     response_header: Some("x-trace-id".into()),
///     ..Default::default()
/// };
/// let svc = ServiceBuilder::new()
///     .layer(TraceContextLayer::new(&cfg, Default::default())?)
///     .service(service_fn(|req: HttpRequest| async move {
///         // The upstream sees the caller's trace with the proxy's span as parent.
///         let tp = TraceParent::from_headers(req.headers()).expect("forwarded");
///         assert_eq!(tp.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
///         assert_ne!(tp.parent_id.to_string(), "00f067aa0ba902b7");
///         Ok::<_, BoxError>(http::Response::new(Body::empty()))
///     }));
/// let req = http::Request::builder()
///     .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
///     .body(Body::empty())?;
/// let resp = svc.oneshot(req).await?;
/// assert_eq!(resp.headers()["x-trace-id"], "4bf92f3577b34da6a3ce929d0e0e4736");
/// # Ok::<_, BoxError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct TraceContextLayer {
    settings: Arc<Settings>,
}

impl TraceContextLayer {
    /// Validates `cfg` and builds its exporter, counting in `counters`. Starts
    /// nothing: an OTLP exporter's thread starts with the first span.
    ///
    /// # Errors
    /// An invalid `response_header`, an unusable OTLP `endpoint`, or an OTLP exporter
    /// without the `otel` feature, naming the field.
    pub fn new(
        cfg: &TraceContextConfig,
        counters: Arc<TraceContextCounters>,
    ) -> Result<Self, ConfigError> {
        let response_header = match &cfg.response_header {
            Some(h) => Some(HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                ConfigError::invalid("response_header", format!("{h:?} is not a header name"))
            })?),
            None => None,
        };
        let exporter: Option<Arc<dyn SpanExporter>> = match &cfg.exporter {
            None => None,
            Some(ExporterConfig::Log) => Some(Arc::new(LogExporter::new(counters.clone()))),
            Some(ExporterConfig::Otlp(otlp)) => Some(otlp_exporter(otlp, &counters)?),
        };
        Ok(Self {
            settings: Arc::new(Settings {
                sample_per_million: cfg.sample_percent.per_million(),
                response_header,
                exporter,
                counters,
                api: None,
            }),
        })
    }

    /// Sends sampled spans to `exporter` instead of the configured one.
    pub fn with_exporter(mut self, exporter: Arc<dyn SpanExporter>) -> Self {
        self.settings_mut(|s| s.exporter = Some(exporter));
        self
    }

    /// Names the API of requests whose response carries no matched route (a route's
    /// own filter: the route's name).
    pub fn with_api(mut self, api: Option<&str>) -> Self {
        self.settings_mut(|s| s.api = api.map(Arc::from));
        self
    }

    fn settings_mut(&mut self, change: impl FnOnce(&mut Settings)) {
        let s = &self.settings;
        let mut next = Settings {
            sample_per_million: s.sample_per_million,
            response_header: s.response_header.clone(),
            exporter: s.exporter.clone(),
            counters: s.counters.clone(),
            api: s.api.clone(),
        };
        change(&mut next);
        self.settings = Arc::new(next);
    }
}

#[cfg(feature = "otel")]
fn otlp_exporter(
    cfg: &OtlpConfig,
    counters: &Arc<TraceContextCounters>,
) -> Result<Arc<dyn SpanExporter>, ConfigError> {
    Ok(Arc::new(OtlpExporter::new(cfg, counters.clone())?))
}

#[cfg(not(feature = "otel"))]
fn otlp_exporter(
    _cfg: &OtlpConfig,
    _counters: &Arc<TraceContextCounters>,
) -> Result<Arc<dyn SpanExporter>, ConfigError> {
    Err(ConfigError::invalid(
        "exporter.otlp",
        "this build has no OTLP exporter (build proxy-filters with the `otel` feature)",
    ))
}

impl<S> Layer<S> for TraceContextLayer {
    type Service = TraceContext<S>;

    fn layer(&self, inner: S) -> TraceContext<S> {
        TraceContext::new(inner, self.settings.clone())
    }
}
