//! The OTLP exporter (feature `otel`): spans queued without blocking into a bounded
//! queue, batched on a thread of their own, and sent to an OpenTelemetry collector
//! over OTLP/HTTP with protobuf by `opentelemetry-otlp`.

use std::{
    fmt,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use opentelemetry::{
    trace::{SpanContext, SpanKind, Status, TraceFlags, TraceState},
    InstrumentationScope, KeyValue,
};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::{
    trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks},
    Resource,
};

use super::{OtlpConfig, SpanExporter, SpanRecord, TraceContextCounters};
use crate::ConfigError;

/// Sends spans to an OpenTelemetry collector over OTLP/HTTP (protobuf).
///
/// [`SpanExporter::export`] only tries to put the span in a bounded queue
/// (`queue_spans`); a full queue drops the span and counts it
/// (`proxy_filters_trace_context_spans_total{result="dropped"}`). A thread started
/// with the first span sends batches of up to `batch_spans`, at least every
/// `flush_interval`, and ends (after a last batch) when the exporter is dropped.
///
/// ```
/// use proxy_filters::trace::{OtlpExporter, TraceContextConfig, TraceContextLayer};
/// let cfg: TraceContextConfig = serde_json::from_value(serde_json::json!({
///     "exporter": { "otlp": { "endpoint": "http://127.0.0.1:4318/v1/traces" } }
/// })).unwrap();
/// // Building starts nothing: the exporter's thread starts with the first span.
/// let layer = TraceContextLayer::new(&cfg, Default::default()).unwrap();
/// # let _ = layer;
/// ```
pub struct OtlpExporter {
    queue: SyncSender<SpanRecord>,
    /// The batching loop, taken by the first span to start its thread.
    worker: Mutex<Option<Worker>>,
    started: AtomicBool,
    counters: Arc<TraceContextCounters>,
}

impl fmt::Debug for OtlpExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpExporter")
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl OtlpExporter {
    /// An exporter to `cfg.endpoint`, counting in `counters`. Builds the HTTP client
    /// but starts nothing.
    ///
    /// # Errors
    /// An endpoint that is not an `http://` URL (the exporter speaks plain HTTP; put
    /// a local collector or a TLS-terminating sidecar in front of a remote one).
    pub fn new(cfg: &OtlpConfig, counters: Arc<TraceContextCounters>) -> Result<Self, ConfigError> {
        let field = "exporter.otlp.endpoint";
        let uri: http::Uri = cfg
            .endpoint
            .parse()
            .map_err(|e| ConfigError::invalid(field, format!("{:?}: {e}", cfg.endpoint)))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(ConfigError::invalid(
                field,
                format!("{:?} is not an http:// URL", cfg.endpoint),
            ));
        }
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(cfg.endpoint.clone())
            .with_protocol(Protocol::HttpBinary)
            .with_timeout(cfg.timeout)
            .build()
            .map_err(|e| ConfigError::invalid(field, e.to_string()))?;
        exporter.set_resource(
            &Resource::builder_empty()
                .with_service_name(cfg.service_name.clone())
                .build(),
        );
        let (queue, spans) = mpsc::sync_channel(cfg.queue_spans.get());
        Ok(Self {
            queue,
            worker: Mutex::new(Some(Worker {
                spans,
                exporter,
                batch_spans: cfg.batch_spans.get(),
                flush_interval: cfg.flush_interval,
                counters: counters.clone(),
            })),
            started: AtomicBool::new(false),
            counters,
        })
    }

    /// Starts the batching thread, once.
    fn start(&self) {
        let worker = match self.worker.lock() {
            Ok(mut w) => w.take(),
            Err(_) => None,
        };
        self.started.store(true, Ordering::Release);
        if let Some(worker) = worker {
            let spawned = std::thread::Builder::new()
                .name("otlp-exporter".to_owned())
                .spawn(move || worker.run());
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the OTLP exporter thread; spans will be dropped");
            }
        }
    }
}

impl SpanExporter for OtlpExporter {
    fn export(&self, span: SpanRecord) {
        if !self.started.load(Ordering::Acquire) {
            self.start();
        }
        match self.queue.try_send(span) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.dropped.inc();
            }
        }
    }
}

/// The batching loop and what it needs, moved to its thread.
struct Worker {
    spans: Receiver<SpanRecord>,
    exporter: opentelemetry_otlp::SpanExporter,
    batch_spans: usize,
    flush_interval: Duration,
    counters: Arc<TraceContextCounters>,
}

impl Worker {
    fn run(self) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the OTLP exporter's runtime");
                return;
            }
        };
        let mut batch = Vec::with_capacity(self.batch_spans);
        // Wait for a first span, then fill the batch until full or due.
        while let Ok(first) = self.spans.recv() {
            batch.push(first);
            let due = Instant::now() + self.flush_interval;
            let mut open = true;
            while batch.len() < self.batch_spans {
                match self
                    .spans
                    .recv_timeout(due.saturating_duration_since(Instant::now()))
                {
                    Ok(span) => batch.push(span),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            self.send(&runtime, &mut batch);
            if !open {
                return;
            }
        }
    }

    fn send(&self, runtime: &tokio::runtime::Runtime, batch: &mut Vec<SpanRecord>) {
        let n = batch.len() as u64;
        let data: Vec<SpanData> = batch.drain(..).map(span_data).collect();
        match runtime.block_on(self.exporter.export(data)) {
            Ok(()) => self.counters.exported.add(n),
            Err(e) => {
                self.counters.failed.add(n);
                tracing::warn!(error = %e, spans = n, "OTLP export failed");
            }
        }
    }
}

/// The span in the SDK's form: a server span named `METHOD api`, with the HTTP
/// semantic conventions' attributes.
fn span_data(s: SpanRecord) -> SpanData {
    let context = SpanContext::new(
        opentelemetry::trace::TraceId::from_bytes(s.trace_id.to_bytes()),
        opentelemetry::trace::SpanId::from_bytes(s.span_id.to_bytes()),
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    );
    let name = match &s.api {
        Some(api) => format!("{} {api}", s.method),
        None => s.method.to_string(),
    };
    let mut attributes = vec![
        KeyValue::new("http.request.method", s.method.to_string()),
        KeyValue::new("url.path", s.path.clone()),
    ];
    if let Some(status) = s.status {
        attributes.push(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
    }
    if let Some(api) = &s.api {
        attributes.push(KeyValue::new("http.route", api.to_string()));
    }
    if let Some(consumer) = &s.consumer {
        attributes.push(KeyValue::new("enduser.id", consumer.to_string()));
    }
    if let Some(cluster) = &s.upstream_cluster {
        attributes.push(KeyValue::new("proxy.upstream_cluster", cluster.to_string()));
    }
    let status = match s.status {
        None => Status::error("no response"),
        Some(code) if code >= 500 => Status::error(""),
        Some(_) => Status::Unset,
    };
    SpanData {
        span_context: context,
        parent_span_id: s
            .parent_id
            .map_or(opentelemetry::trace::SpanId::INVALID, |p| {
                opentelemetry::trace::SpanId::from_bytes(p.to_bytes())
            }),
        parent_span_is_remote: s.parent_id.is_some(),
        span_kind: SpanKind::Server,
        name: name.into(),
        start_time: s.start,
        end_time: s.start + s.duration,
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: InstrumentationScope::builder("proxy-filters").build(),
    }
}
