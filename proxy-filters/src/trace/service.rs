//! The trace context service and its response future.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Instant, SystemTime},
};

use http::HeaderMap;
use proxy_core::proxy::MatchedRoute;
use tower_service::Service;

use super::{
    context::{tracestate_is_valid, TraceParent, TRACEPARENT, TRACESTATE},
    ActiveSpan, Settings, SpanId, SpanRecord, TraceId,
};
use crate::auth::Consumer;

/// Joins or starts the request's trace, forwards `traceparent` with the proxy's span
/// as parent, and exports the request's span (see [`super`]).
#[derive(Debug, Clone)]
pub struct TraceContext<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S> TraceContext<S> {
    pub(super) fn new(inner: S, settings: Arc<Settings>) -> Self {
        Self { inner, settings }
    }
}

/// What the response future needs to finish the span.
#[derive(Debug)]
struct Pending {
    trace_id: TraceId,
    /// The span to export, when sampled and an exporter is set.
    record: Option<SpanRecord>,
    consumer: Option<Consumer>,
    started: Instant,
}

pin_project_lite::pin_project! {
    /// The response future of [`TraceContext`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        pending: Option<Pending>,
        settings: Arc<Settings>,
    }
}

impl<S, B, RB> Service<http::Request<B>> for TraceContext<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let s = &self.settings;
        let incoming = TraceParent::from_headers(req.headers());
        let (trace_id, parent_id, sampled) = match incoming {
            Some(tp) => {
                s.counters.continued.inc();
                if !tracestate_ok(req.headers()) {
                    req.headers_mut().remove(TRACESTATE);
                }
                (tp.trace_id, Some(tp.parent_id), tp.sampled())
            }
            None => {
                if req.headers().contains_key(TRACEPARENT) {
                    s.counters.restarted.inc();
                } else {
                    s.counters.started.inc();
                }
                // A tracestate without a valid traceparent is not parsed: dropped.
                req.headers_mut().remove(TRACESTATE);
                let sampled = fastrand::u32(0..1_000_000) < s.sample_per_million;
                (TraceId::random(), None, sampled)
            }
        };
        let span_id = SpanId::random();
        req.headers_mut().insert(
            TRACEPARENT,
            TraceParent::new(trace_id, span_id, sampled).to_header_value(),
        );
        req.extensions_mut().insert(ActiveSpan {
            trace_id,
            span_id,
            sampled,
        });
        let consumer = req.extensions().get::<Consumer>().cloned();
        let record = (sampled && s.exporter.is_some()).then(|| {
            let mut r = SpanRecord::new(
                trace_id,
                span_id,
                parent_id,
                req.method().clone(),
                req.uri().path(),
            );
            r.start = SystemTime::now();
            r
        });
        ResponseFuture {
            inner: self.inner.call(req),
            pending: Some(Pending {
                trace_id,
                record,
                consumer,
                started: Instant::now(),
            }),
            settings: self.settings.clone(),
        }
    }
}

/// Whether the request's `tracestate` lines are absent or valid.
fn tracestate_ok(headers: &HeaderMap) -> bool {
    let mut lines = Vec::new();
    for v in headers.get_all(TRACESTATE) {
        match v.to_str() {
            Ok(s) => lines.push(s),
            Err(_) => return false,
        }
    }
    tracestate_is_valid(lines)
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
{
    type Output = Result<http::Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = std::task::ready!(this.inner.poll(cx));
        let Some(pending) = this.pending.take() else {
            return Poll::Ready(result);
        };
        let settings = &**this.settings;
        if let Ok(resp) = &mut result {
            if let Some(name) = &settings.response_header {
                resp.headers_mut()
                    .insert(name.clone(), pending.trace_id.to_header_value());
            }
            if let Some(c) = &pending.consumer {
                c.onto_response(resp);
            }
        }
        if let (Some(mut record), Some(exporter)) = (pending.record, &settings.exporter) {
            record.duration = pending.started.elapsed();
            record.api = settings.api.clone();
            record.consumer = pending.consumer.map(|c| c.id);
            if let Ok(resp) = &result {
                record.status = Some(resp.status().as_u16());
                if let Some(MatchedRoute(route)) = resp.extensions().get::<MatchedRoute>() {
                    record.api = Some(route.name.clone());
                    record.upstream_cluster = Some(route.cluster.clone());
                }
                if record.consumer.is_none() {
                    record.consumer = resp.extensions().get::<Consumer>().map(|c| c.id.clone());
                }
            }
            exporter.export(record);
        }
        Poll::Ready(result)
    }
}
