//! The admin listener: `/ready`, `/stats/prometheus`, `/config_dump`, `/clusters`.

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Method, StatusCode};
use proxy_test_support::{client, with_timeout, Upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints() {
    with_timeout(Duration::from_secs(30), async {
        let up = Upstream::echo("echo");
        let mut cfg = ConfigBuilder::new()
            .routes(vec![route("r", "/", "c", "")])
            .cluster(cluster("c", up.addr, ""));
        let sc = Sidecar::start_with(&mut cfg).await;

        let ready = sc.admin_get("/ready").await;
        assert_eq!(ready.status, StatusCode::OK);

        // One request through the proxy so the counters move, and one connection
        // kept open so the active-connections gauge is 1.
        let mut c = client::H1Client::new(cfg.listen);
        let r = c.request(Method::GET, "/x", &[], Bytes::new()).await.expect("request");
        assert_eq!(r.status, StatusCode::OK);

        let m = sc.metrics().await;
        assert!(
            metric_sum(&m, &["proxy_listener_connections_active", "listener=\"main\""]) >= 1.0,
            "proxy_listener_connections_active{{listener=\"main\"}} counts the open connection:\n{m}"
        );
        assert!(metric_sum(&m, &["proxy_route_requests_total", "route=\"r\""]) >= 1.0, "{m}");
        assert!(
            metric_sum(&m, &["proxy_cluster_responses_total", "cluster=\"c\"", "class=\"2xx\""]) >= 1.0,
            "{m}"
        );
        assert!(m.lines().any(|l| l.starts_with("proxy_endpoint_")), "per-endpoint metrics:\n{m}");
        for line in m.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap_or_default();
            assert!(value.parse::<f64>().is_ok(), "not a Prometheus sample line: {line:?}");
        }

        let dump = sc.admin_get("/config_dump").await;
        assert_eq!(dump.status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_slice(&dump.body).expect("config_dump is JSON");
        assert_eq!(v["listeners"][0]["name"], "main", "{v}");
        assert_eq!(v["clusters"][0]["name"], "c", "{v}");

        let clusters = sc.admin_get("/clusters").await;
        assert_eq!(clusters.status, StatusCode::OK);
        let text = clusters.text();
        assert!(text.contains('c') && text.contains(&up.addr.to_string()), "/clusters lists c and its endpoint: {text}");

        let missing = sc.admin_get("/no-such-admin-path").await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
    })
    .await;
}
