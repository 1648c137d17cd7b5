//! W3C trace context through a real proxy: a caller's trace continued with the
//! proxy's span as the upstream's parent, sampled flag and `tracestate` kept; a new
//! trace for a request without (or with a malformed) `traceparent`; the trace id
//! returned in a response header and counted; the span's consumer and API seen by
//! an exporter in code; config errors naming the field.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{config, listener, try_start};
use proxy_core::{Body, BoxError, HttpRequest};
use proxy_filters::{
    api_metrics::{ApiMetrics, ApiMetricsConfig, ApiMetricsLayer},
    auth::Consumer,
    trace::{SpanExporter, SpanRecord, TraceContextConfig, TraceContextLayer, TraceParent},
};
use proxy_test_support::{client::get, free_addr, prometheus, with_timeout, TestServer, Upstream};
use tower::{service_fn, ServiceBuilder, ServiceExt};

const LIMIT: Duration = Duration::from_secs(30);
const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// A config whose listener `edge` runs `trace_context` with `config_map` (a flow
/// map) in front of `upstream`.
fn trace_yaml(config_map: &str, upstream: std::net::SocketAddr) -> String {
    config(
        &[listener(
            "edge",
            &format!("[{{typed: trace_context, config: {config_map}}}]"),
            "b",
        )],
        &[("b", upstream)],
    )
}

/// A proxy with an admin listener whose listener `edge` runs `trace_context` with
/// `config_map` in front of an echo upstream.
fn proxy(config_map: &str, upstream: &Upstream) -> TestServer {
    let admin = free_addr();
    let yaml = format!(
        "admin: {{ address: \"{admin}\" }}\n{}",
        trace_yaml(config_map, upstream.addr)
    );
    try_start(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// `proxy_filters_trace_context_requests_total{filter="edge",trace=...}` in the
/// Prometheus text `metrics`.
fn requests_counted(metrics: &str, trace: &str) -> Option<f64> {
    prometheus::sample(
        metrics,
        &format!(r#"proxy_filters_trace_context_requests_total{{filter="edge",trace="{trace}"}}"#),
    )
}

/// The `traceparent` the upstream saw last.
fn seen_traceparent(upstream: &Upstream) -> TraceParent {
    let seen = upstream.requests().pop().unwrap();
    let value = seen.header("traceparent").unwrap();
    TraceParent::parse(value).unwrap_or_else(|| panic!("invalid forwarded {value:?}"))
}

#[tokio::test]
async fn a_callers_trace_continues_with_the_proxys_span_as_parent() {
    with_timeout(LIMIT, async {
        let up = Upstream::echo("backend");
        let p = proxy("{response_header: x-trace-id, exporter: log}", &up);
        let edge = p.addr("edge");

        let r = get(
            edge,
            "/",
            &[
                ("traceparent", CALLER),
                ("tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
            ],
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-trace-id"), Some(CALLER_TRACE));
        let tp = seen_traceparent(&up);
        assert_eq!(tp.trace_id.to_string(), CALLER_TRACE);
        assert_ne!(
            tp.parent_id.to_string(),
            CALLER_SPAN,
            "the proxy's own span"
        );
        assert!(tp.sampled());
        let seen = up.requests().pop().unwrap();
        assert_eq!(
            seen.header("tracestate"),
            Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
        );

        // Not sampled by the caller: the flag stays off.
        let unsampled = CALLER.replace("-01", "-00");
        get(edge, "/", &[("traceparent", &unsampled)]).await;
        let tp = seen_traceparent(&up);
        assert_eq!(tp.trace_id.to_string(), CALLER_TRACE);
        assert!(!tp.sampled());

        // A future version is read forward-compatibly and written as 00.
        let future = format!("{}-more", CALLER.replacen("00", "01", 1));
        get(edge, "/", &[("traceparent", &future)]).await;
        let seen = up.requests().pop().unwrap();
        let forwarded = seen.header("traceparent").unwrap();
        assert!(
            forwarded.starts_with(&format!("00-{CALLER_TRACE}-")),
            "{forwarded}"
        );
        assert_eq!(forwarded.len(), 55);

        let (_, m) = p.admin_get("/stats/prometheus").await;
        assert_eq!(requests_counted(&m, "continued"), Some(3.0), "{m}");
        assert_eq!(
            prometheus::sample(
                &m,
                r#"proxy_filters_trace_context_spans_total{filter="edge",result="exported"}"#
            ),
            Some(2.0),
            "two sampled spans logged: {m}"
        );
    })
    .await;
}

#[tokio::test]
async fn missing_or_malformed_traceparent_starts_a_new_trace() {
    with_timeout(LIMIT, async {
        let up = Upstream::echo("backend");
        let p = proxy("{response_header: x-trace-id}", &up);
        let edge = p.addr("edge");

        let r = get(edge, "/", &[]).await;
        let first = seen_traceparent(&up);
        assert_eq!(
            r.header("x-trace-id"),
            Some(first.trace_id.to_string().as_str())
        );
        assert!(first.sampled(), "sample_percent defaults to 100");

        let r = get(edge, "/", &[]).await;
        assert_ne!(
            r.header("x-trace-id"),
            Some(first.trace_id.to_string().as_str())
        );

        // Uppercase hex, a zero trace id, a repeated header: new traces, and the
        // tracestate that came with them is dropped.
        let upper = CALLER.to_uppercase();
        let zero = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        for bad in [upper.as_str(), zero] {
            get(edge, "/", &[("traceparent", bad), ("tracestate", "a=1")]).await;
            let tp = seen_traceparent(&up);
            assert_ne!(tp.trace_id.to_string(), CALLER_TRACE, "{bad}");
            assert_eq!(up.requests().pop().unwrap().header("tracestate"), None);
        }
        get(
            edge,
            "/",
            &[("traceparent", CALLER), ("traceparent", CALLER)],
        )
        .await;
        assert_ne!(seen_traceparent(&up).trace_id.to_string(), CALLER_TRACE);

        // A valid traceparent with a malformed tracestate: the trace goes on, the
        // tracestate does not.
        get(
            edge,
            "/",
            &[("traceparent", CALLER), ("tracestate", "Bad=1")],
        )
        .await;
        assert_eq!(seen_traceparent(&up).trace_id.to_string(), CALLER_TRACE);
        assert_eq!(up.requests().pop().unwrap().header("tracestate"), None);

        let (_, m) = p.admin_get("/stats/prometheus").await;
        assert_eq!(requests_counted(&m, "started"), Some(2.0), "{m}");
        assert_eq!(requests_counted(&m, "restarted"), Some(3.0), "{m}");
        assert_eq!(requests_counted(&m, "continued"), Some(1.0), "{m}");
    })
    .await;
}

#[tokio::test]
async fn new_traces_are_sampled_by_ratio_and_callers_flags_win() {
    with_timeout(LIMIT, async {
        let up = Upstream::echo("backend");
        let p = proxy("{sample_percent: 0}", &up);
        let edge = p.addr("edge");
        for _ in 0..5 {
            get(edge, "/", &[]).await;
            assert!(!seen_traceparent(&up).sampled());
        }
        get(edge, "/", &[("traceparent", CALLER)]).await;
        assert!(seen_traceparent(&up).sampled(), "the caller sampled it");
    })
    .await;
}

/// Spans kept in memory, for assertions.
#[derive(Debug, Default)]
struct Collect(Mutex<Vec<SpanRecord>>);

impl SpanExporter for Collect {
    fn export(&self, span: SpanRecord) {
        self.0.lock().unwrap().push(span);
    }
}

#[tokio::test]
async fn the_span_names_the_consumer_an_auth_filter_found_after_it() {
    let spans = Arc::new(Collect::default());
    let metrics = Arc::new(ApiMetrics::default());
    let svc = ServiceBuilder::new()
        .layer(
            TraceContextLayer::new(&TraceContextConfig::default(), Default::default())
                .unwrap()
                .with_exporter(spans.clone())
                .with_api(Some("orders")),
        )
        // What an auth filter does: the consumer in the request.
        .map_request(|mut req: HttpRequest| {
            req.extensions_mut().insert(Consumer::new("alice"));
            req
        })
        .layer(ApiMetricsLayer::new(&ApiMetricsConfig::default(), metrics))
        .service(service_fn(|_req: HttpRequest| async {
            let resp = http::Response::builder().status(201).body(Body::empty())?;
            Ok::<_, BoxError>(resp)
        }));
    let req = http::Request::builder()
        .method("POST")
        .uri("/orders?secret=1")
        .header("traceparent", CALLER)
        .body(Body::empty())
        .unwrap();
    svc.oneshot(req).await.unwrap();
    let spans = spans.0.lock().unwrap();
    let s = &spans[0];
    assert_eq!(s.trace_id.to_string(), CALLER_TRACE);
    assert_eq!(
        s.parent_id.map(|p| p.to_string()).as_deref(),
        Some(CALLER_SPAN)
    );
    assert_eq!(s.consumer.as_deref(), Some("alice"));
    assert_eq!(s.api.as_deref(), Some("orders"));
    assert_eq!(s.status, Some(201));
    assert_eq!(s.method, http::Method::POST);
    assert_eq!(s.path, "/orders", "no query");
}

#[test]
fn config_errors_name_the_field() {
    let start = |map: &str| {
        try_start(&trace_yaml(map, free_addr()))
            .err()
            .unwrap_or_default()
    };
    let e = start("{response_header: 'bad header'}");
    assert!(
        e.contains("listeners[0].http_filters[0].config.response_header"),
        "{e}"
    );
    let e = start("{sample_percent: 101}");
    assert!(e.contains("sample_percent"), "{e}");
    let e = start("{exporter: {otlp: {endpoint: 'ftp://collector/v1/traces'}}}");
    assert!(e.contains("config.exporter.otlp"), "{e}");
    let e = start("{exporter: stdout}");
    assert!(e.contains("exporter"), "{e}");
}
