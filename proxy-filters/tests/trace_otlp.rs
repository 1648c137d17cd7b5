//! The OTLP exporter (feature `otel`) against a collector on 127.0.0.1: the spans of
//! requests through a real proxy arrive over OTLP/HTTP, decoded with the
//! opentelemetry-proto types, with the caller's trace id, the caller's span as
//! parent and the proxy's span id the upstream saw; a collector that never answers
//! fills the bounded queue, and the spans past it are dropped and counted without
//! holding up requests.

#![allow(clippy::unwrap_used)]

mod common;

use std::{sync::Arc, time::Duration};

use common::{config, listener, try_start};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, common::v1::any_value, trace::v1::Span,
};
use prost::Message as _;
use proxy_filters::trace::{
    OtlpConfig, OtlpExporter, SpanExporter, SpanId, SpanRecord, TraceContextCounters, TraceId,
    TraceParent,
};
use proxy_test_support::{
    client::get, eventually, free_addr, prometheus, upstream::response, with_timeout, Upstream,
};

const LIMIT: Duration = Duration::from_secs(30);
const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The spans a collector received so far.
fn received(collector: &Upstream) -> Vec<(String, Span)> {
    let mut spans = Vec::new();
    for seen in collector.requests() {
        assert_eq!(seen.path(), "/v1/traces");
        assert_eq!(seen.header("content-type"), Some("application/x-protobuf"));
        let req = ExportTraceServiceRequest::decode(seen.body.clone()).unwrap();
        for rs in req.resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.clone());
            let service = match service {
                Some(any_value::Value::StringValue(s)) => s,
                other => panic!("service.name: {other:?}"),
            };
            for ss in rs.scope_spans {
                spans.extend(ss.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
    }
    spans
}

fn attribute(span: &Span, key: &str) -> Option<any_value::Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.clone())
}

#[tokio::test]
async fn spans_reach_an_otlp_collector_with_the_right_ids() {
    with_timeout(LIMIT, async {
        let collector = Upstream::http(|_| response(200, ""));
        let up = Upstream::echo("backend");
        let admin = free_addr();
        let filter = format!(
            "[{{typed: trace_context, config: {{exporter: {{otlp: {{endpoint: 'http://{}/v1/traces', \
             service_name: gateway, flush_interval: 20ms}}}}}}}}]",
            collector.addr
        );
        let yaml = config(&[listener("edge", &filter, "b")], &[("b", up.addr)]);
        let yaml = format!("admin: {{ address: \"{admin}\" }}\n{yaml}");
        let p = try_start(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let edge = p.addr("edge");

        assert_eq!(get(edge, "/orders?x=1", &[("traceparent", CALLER)]).await.status, 200);
        let upstream_saw = TraceParent::parse(up.requests()[0].header("traceparent").unwrap()).unwrap();
        assert!(get(edge, "/fresh", &[]).await.status.is_success());

        assert!(
            eventually(Duration::from_secs(10), || received(&collector).len() == 2).await,
            "two spans at the collector: {:?}",
            received(&collector)
        );
        let spans = received(&collector);
        let (service, continued) = spans
            .iter()
            .find(|(_, s)| s.trace_id == TraceParent::parse(CALLER).unwrap().trace_id.to_bytes())
            .expect("the caller's trace");
        assert_eq!(service, "gateway");
        assert_eq!(continued.span_id, upstream_saw.parent_id.to_bytes().to_vec());
        assert_eq!(continued.parent_span_id, hex("00f067aa0ba902b7"));
        assert_eq!(continued.name, "GET edge-route");
        assert_eq!(
            attribute(continued, "http.response.status_code"),
            Some(any_value::Value::IntValue(200))
        );
        assert_eq!(
            attribute(continued, "url.path"),
            Some(any_value::Value::StringValue("/orders".into()))
        );
        assert!(continued.end_time_unix_nano >= continued.start_time_unix_nano);
        let (_, fresh) = spans.iter().find(|(_, s)| s.span_id != continued.span_id).unwrap();
        assert!(fresh.parent_span_id.is_empty(), "a new trace has no parent");
        assert_ne!(fresh.trace_id, continued.trace_id);

        let (_, m) = p.admin_get("/stats/prometheus").await;
        assert_eq!(
            prometheus::sample(&m, r#"proxy_filters_trace_context_spans_total{filter="edge",result="exported"}"#),
            Some(2.0),
            "{m}"
        );
    })
    .await;
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test]
async fn a_stuck_collector_fills_the_queue_and_drops_are_counted() {
    with_timeout(LIMIT, async {
        let stuck = Upstream::blackhole();
        let counters = Arc::new(TraceContextCounters::default());
        let cfg = OtlpConfig {
            endpoint: format!("http://{}/v1/traces", stuck.addr),
            service_name: "proxy".into(),
            queue_spans: 1.try_into().unwrap(),
            batch_spans: 1.try_into().unwrap(),
            flush_interval: Duration::from_millis(10),
            timeout: Duration::from_secs(20),
        };
        let exporter = OtlpExporter::new(&cfg, counters.clone()).unwrap();
        let started = std::time::Instant::now();
        for _ in 0..5 {
            let span = SpanRecord::new(
                TraceId::random(),
                SpanId::random(),
                None,
                http::Method::GET,
                "/",
            );
            exporter.export(span);
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "export never waits"
        );
        // At most one span in the worker's hands and one in the queue.
        assert!(
            counters.dropped.get() >= 3,
            "dropped {}",
            counters.dropped.get()
        );
        assert_eq!(counters.exported.get(), 0);
    })
    .await;
}
