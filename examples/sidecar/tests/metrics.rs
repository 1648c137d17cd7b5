//! `/stats/prometheus` is valid Prometheus text with per-listener, per-route,
//! per-cluster and per-endpoint request counts, status classes and latency
//! histograms; `/clusters` lists endpoints with their connection counts.

use crate::common;

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use common::*;
use http::{Method, StatusCode};
use proxy_test_support::{client, free_addr, with_timeout, Upstream};

const LIMIT: Duration = Duration::from_secs(60);

#[path = "metrics/exposition.rs"]
mod exposition;

use exposition::{parse_exposition, value};

// === the sidecar ===

async fn get(client: &mut client::H1Client, path: &str, headers: &[(&str, &str)]) -> StatusCode {
    client
        .request(Method::GET, path, headers, Bytes::new())
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_text_has_every_level_and_clusters_lists_connections() {
    with_timeout(LIMIT, async {
        let a = Upstream::echo("a");
        let b = Upstream::echo("b");
        let dead: SocketAddr = free_addr();
        let mut cfg = ConfigBuilder::new()
            .routes(vec![
                route("alpha", "/alpha/", "alpha", ""),
                route("beta", "/beta/", "beta", ""),
            ])
            .cluster(cluster("alpha", a.addr, ""))
            .cluster(format!(
                "{{name: beta, endpoints: [\"{}\", \"{dead}\"], connect_timeout: 1s}}",
                b.addr
            ));
        let sc = Sidecar::start_with(&mut cfg).await;
        let mut client = client::H1Client::new(cfg.listen);
        // alpha: 4 x 200 and one 404 from the upstream.
        for i in 0..4 {
            assert_eq!(
                get(&mut client, &format!("/alpha/{i}"), &[]).await,
                StatusCode::OK
            );
        }
        assert_eq!(
            get(&mut client, "/alpha/missing", &[("x-echo-status", "404")]).await,
            StatusCode::NOT_FOUND
        );
        // beta: round robin over a live and a refusing endpoint, 3 x 200 and 3 x 503.
        let mut beta = Vec::new();
        for i in 0..6 {
            beta.push(get(&mut client, &format!("/beta/{i}"), &[]).await);
        }
        let ok = beta.iter().filter(|s| **s == StatusCode::OK).count();
        assert_eq!(ok, 3, "beta alternates endpoints: {beta:?}");
        // No route.
        assert_eq!(
            get(&mut client, "/nowhere", &[]).await,
            StatusCode::NOT_FOUND
        );

        let r = sc.admin_get("/stats/prometheus").await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("text/plain")),
            "{:?}",
            r.header("content-type")
        );
        let text = r.text();
        let s = parse_exposition(&text)
            .unwrap_or_else(|e| panic!("invalid Prometheus text: {e}\n{text}"));
        let v = |name: &str, labels: &[(&str, &str)]| value(&s, name, labels);

        // Listener.
        let l = [("listener", "main")];
        assert_eq!(v("proxy_listener_requests_total", &l), 12.0);
        assert_eq!(v("proxy_listener_requests_active", &l), 0.0);
        let lc = |class| [("listener", "main"), ("class", class)];
        assert_eq!(v("proxy_listener_responses_total", &lc("2xx")), 7.0);
        assert_eq!(v("proxy_listener_responses_total", &lc("4xx")), 2.0);
        assert_eq!(v("proxy_listener_responses_total", &lc("5xx")), 3.0);
        assert_eq!(
            v(
                "proxy_listener_local_responses_total",
                &[("listener", "main"), ("reason", "no_route")]
            ),
            1.0
        );
        assert_eq!(
            v(
                "proxy_listener_request_duration_seconds_bucket",
                &[("listener", "main"), ("le", "+Inf")]
            ),
            12.0
        );
        assert!(v("proxy_listener_connections_total", &l) >= 1.0);
        assert!(v("proxy_listener_rx_bytes_total", &l) > 0.0);
        assert!(v("proxy_listener_tx_bytes_total", &l) > 0.0);

        // Routes.
        let rt = |route, class| {
            [
                ("listener", "main"),
                ("vhost", "default"),
                ("route", route),
                ("class", class),
            ]
        };
        assert_eq!(v("proxy_route_requests_total", &[("route", "alpha")]), 5.0);
        assert_eq!(v("proxy_route_responses_total", &rt("alpha", "2xx")), 4.0);
        assert_eq!(v("proxy_route_responses_total", &rt("alpha", "4xx")), 1.0);
        assert_eq!(v("proxy_route_requests_total", &[("route", "beta")]), 6.0);
        assert_eq!(v("proxy_route_responses_total", &rt("beta", "2xx")), 3.0);
        assert_eq!(v("proxy_route_responses_total", &rt("beta", "5xx")), 3.0);
        assert_eq!(
            v(
                "proxy_route_local_responses_total",
                &[("route", "beta"), ("reason", "connect_failure")]
            ),
            3.0
        );
        assert_eq!(
            v(
                "proxy_route_request_duration_seconds_bucket",
                &[("route", "alpha"), ("le", "+Inf")]
            ),
            5.0
        );
        assert_eq!(
            v(
                "proxy_route_request_duration_seconds_count",
                &[("route", "beta")]
            ),
            6.0
        );

        // Clusters.
        assert_eq!(
            v("proxy_cluster_requests_total", &[("cluster", "alpha")]),
            5.0
        );
        assert_eq!(
            v("proxy_cluster_requests_total", &[("cluster", "beta")]),
            6.0
        );
        assert_eq!(
            v(
                "proxy_cluster_responses_total",
                &[("cluster", "beta"), ("class", "5xx")]
            ),
            3.0
        );
        assert_eq!(
            v(
                "proxy_cluster_request_duration_seconds_bucket",
                &[("cluster", "alpha"), ("le", "+Inf")]
            ),
            5.0
        );

        // Endpoints.
        let (live_b, dead_s) = (b.addr.to_string(), dead.to_string());
        fn ep(addr: &str) -> [(&'static str, &str); 2] {
            [("cluster", "beta"), ("endpoint", addr)]
        }
        assert_eq!(v("proxy_endpoint_requests_total", &ep(&live_b)), 3.0);
        assert_eq!(v("proxy_endpoint_requests_total", &ep(&dead_s)), 3.0);
        assert_eq!(
            v(
                "proxy_endpoint_responses_total",
                &[("endpoint", live_b.as_str()), ("class", "2xx")]
            ),
            3.0
        );
        assert_eq!(
            v(
                "proxy_endpoint_responses_total",
                &[("endpoint", dead_s.as_str()), ("class", "5xx")]
            ),
            3.0
        );
        assert_eq!(
            v(
                "proxy_endpoint_local_responses_total",
                &[("endpoint", dead_s.as_str()), ("reason", "connect_failure")]
            ),
            3.0
        );
        assert_eq!(
            v(
                "proxy_endpoint_request_duration_seconds_bucket",
                &[("endpoint", live_b.as_str()), ("le", "+Inf")]
            ),
            3.0
        );
        let a_s = a.addr.to_string();
        for (cluster, addr) in [("alpha", &a_s), ("beta", &live_b), ("beta", &dead_s)] {
            assert_eq!(
                v(
                    "proxy_endpoint_healthy",
                    &[("cluster", cluster), ("endpoint", addr.as_str())]
                ),
                1.0,
                "no health checking: every endpoint healthy"
            );
        }
        let alpha_ep = [("cluster", "alpha"), ("endpoint", a_s.as_str())];
        assert!(v("proxy_endpoint_upstream_connections_active", &alpha_ep) >= 1.0);
        assert!(v("proxy_endpoint_upstream_idle_connections", &alpha_ep) >= 1.0);
        assert_eq!(
            v("proxy_endpoint_upstream_connections_active", &ep(&dead_s)),
            0.0
        );

        // /clusters
        let r = sc.admin_get("/clusters").await;
        assert_eq!(r.status, StatusCode::OK);
        let j: serde_json::Value = serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("/clusters is not JSON ({e}): {}", r.text()));
        let clusters = j["clusters"].as_array().expect("clusters array");
        let find = |name: &str| {
            clusters
                .iter()
                .find(|c| c["name"] == name)
                .unwrap_or_else(|| panic!("cluster {name} in {j:#}"))
        };
        let endpoint = |cluster: &str, addr: &str| {
            find(cluster)["endpoints"]
                .as_array()
                .expect("endpoints array")
                .iter()
                .find(|e| e["address"] == addr)
                .unwrap_or_else(|| panic!("endpoint {addr} of {cluster} in {j:#}"))
                .clone()
        };
        let e = endpoint("alpha", &a_s);
        let (open, idle) = (
            e["open_connections"].as_u64().expect("open_connections"),
            e["idle_connections"].as_u64().expect("idle_connections"),
        );
        assert!(
            open >= 1 && idle >= 1 && idle <= open && open <= 5,
            "alpha's keep-alive connection is open and idle in the pool: {e}"
        );
        assert_eq!(e["requests"], 5, "{e}");
        assert_eq!(e["healthy"], true, "{e}");
        let e = endpoint("beta", &dead_s);
        assert_eq!(e["open_connections"], 0, "{e}");
        assert_eq!(e["idle_connections"], 0, "{e}");
        assert_eq!(e["requests"], 3, "{e}");
        let e = endpoint("beta", &live_b);
        assert!(
            e["open_connections"].as_u64().is_some_and(|n| n >= 1),
            "{e}"
        );
    })
    .await;
}
