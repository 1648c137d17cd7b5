//! Per-API, per-consumer metrics through a real proxy and a real scrape of
//! `/stats/prometheus`: consumers from `api_key_auth`, the API from the matched
//! route (a listener's filter) or the route's own name (a route's filter), status
//! classes, the latency histogram, and the `max_consumers` bound.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use common::{config, try_start};
use proxy_filters::auth::ApiKeyEntry;
use proxy_test_support::{client::get, free_addr, prometheus, with_timeout, Upstream};

const LIMIT: Duration = Duration::from_secs(30);

/// `api_key_auth` for consumers `a`, `b`, `c` (keys `key-a`, ...), as a flow map.
fn api_keys() -> String {
    let keys: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|c| {
            let e = ApiKeyEntry::for_key(*c, &format!("key-{c}"));
            format!("{{consumer: {}, sha256: {}}}", e.consumer, e.sha256)
        })
        .collect();
    format!(
        "{{typed: api_key_auth, config: {{from: [{{header: {{name: x-api-key}}}}], keys: [{}]}}}}",
        keys.join(", ")
    )
}

fn requests(m: &str, api: &str, consumer: &str, class: &str) -> f64 {
    prometheus::sample(
        m,
        &format!(r#"proxy_filters_api_requests_total{{api="{api}",consumer="{consumer}",status_class="{class}"}}"#),
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn listener_filter_counts_per_route_and_consumer_bounded() {
    with_timeout(LIMIT, async {
        let up = Upstream::echo("backend");
        let admin = free_addr();
        let filters = format!("[{}, {{typed: api_metrics, config: {{max_consumers: 2}}}}]", api_keys());
        let yaml = config(
            &[common::listener("edge", &filters, "b")],
            &[("b", up.addr)],
        );
        let yaml = format!("admin: {{ address: \"{admin}\" }}\n{yaml}");
        let p = try_start(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let edge = p.addr("edge");

        for (key, status) in [("key-a", "200"), ("key-a", "200"), ("key-a", "503"), ("key-b", "404"), ("key-c", "200"), ("key-c", "200")] {
            let r = get(edge, "/", &[("x-api-key", key), ("x-echo-status", status)]).await;
            assert_eq!(r.status.as_str(), status);
        }
        // Refused by the auth filter before it: not counted here.
        assert_eq!(get(edge, "/", &[]).await.status, 401);

        let (_, m) = p.admin_get("/stats/prometheus").await;
        let api = "edge-route";
        assert_eq!(requests(&m, api, "a", "2xx"), 2.0, "{m}");
        assert_eq!(requests(&m, api, "a", "5xx"), 1.0, "{m}");
        assert_eq!(requests(&m, api, "b", "4xx"), 1.0, "{m}");
        assert_eq!(requests(&m, api, "other", "2xx"), 2.0, "c is past max_consumers: {m}");
        assert!(!m.contains("consumer=\"c\""), "{m}");
        assert!(!m.contains("consumer=\"anonymous\""), "{m}");
        let count = prometheus::sample(
            &m,
            &format!(r#"proxy_filters_api_request_duration_seconds_count{{api="{api}",consumer="a"}}"#),
        );
        assert_eq!(count, Some(3.0), "{m}");
        let inf = prometheus::sample(
            &m,
            &format!(r#"proxy_filters_api_request_duration_seconds_bucket{{api="{api}",consumer="a",le="+Inf"}}"#),
        );
        assert_eq!(inf, Some(3.0), "{m}");
        assert_eq!(m.matches("# TYPE proxy_filters_api_requests_total").count(), 1);
    })
    .await;
}

#[tokio::test]
async fn route_filter_counts_under_the_routes_name() {
    with_timeout(LIMIT, async {
        let up = Upstream::echo("backend");
        let admin = free_addr();
        let yaml = format!(
            r#"admin: {{ address: "{admin}" }}
runtime: {{ worker_threads: 1 }}
listeners:
  - name: edge
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - name: orders
            match: {{ path: {{ prefix: "/orders" }} }}
            cluster: b
            filters: [{keys}, {{typed: api_metrics}}]
          - name: open
            match: {{ path: {{ prefix: "/" }} }}
            cluster: b
            filters: [{{typed: api_metrics}}]
clusters:
  - name: b
    endpoints: ["{}"]
"#,
            up.addr,
            keys = api_keys(),
        );
        let p = try_start(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let edge = p.addr("edge");
        assert_eq!(
            get(edge, "/orders/1", &[("x-api-key", "key-b")])
                .await
                .status,
            200
        );
        assert_eq!(get(edge, "/public", &[]).await.status, 200);
        let (_, m) = p.admin_get("/stats/prometheus").await;
        assert_eq!(requests(&m, "orders", "b", "2xx"), 1.0, "{m}");
        assert_eq!(requests(&m, "open", "anonymous", "2xx"), 1.0, "{m}");
    })
    .await;
}
