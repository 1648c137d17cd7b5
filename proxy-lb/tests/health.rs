//! Active health checks on real sockets: an HTTP probe with expected statuses and
//! thresholds takes an endpoint out and back; a TCP probe finds a dead port; a
//! cluster with no healthy endpoint answers 503 `no_endpoints` at once.

#![allow(clippy::unwrap_used)]

use crate::common_resilience;

use std::{net::SocketAddr, time::Duration};

use common_resilience::{
    cluster_status, flags, get, listener, load_error, prometheus, start, Upstream, LIMIT,
};
use proxy_test_support::{eventually_async, free_addr};

fn yaml(endpoints: &[SocketAddr], hc: &str, admin: SocketAddr) -> String {
    let eps: Vec<String> = endpoints.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "admin: {{address: \"{admin}\"}}\nlisteners:\n{}clusters:\n  - name: app\n    extensions: [{{typed: health_check, config: {hc}}}]\n    endpoints: [{}]\n",
        listener("main", "[]", "app"),
        eps.join(", ")
    )
}

const HTTP_HC: &str = "{interval: 50ms, jitter: 20ms, timeout: 200ms, unhealthy_threshold: 2, healthy_threshold: 2, probe: {http: {path: /healthz, expected_statuses: [200, 204]}}}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_checks_take_an_endpoint_out_and_back() {
    let (e1, e2) = (Upstream::start("e1"), Upstream::start("e2"));
    let admin = free_addr();
    let proxy = start(&yaml(&[e1.addr, e2.addr], HTTP_HC, admin));
    let addr = proxy.addr("main");
    tokio::time::timeout(LIMIT, async {
        assert!(
            eventually_async(Duration::from_secs(5), || async { e1.probes() >= 2 }).await,
            "probes run"
        );
        e1.set_health(204);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            flags(admin, "app", e1.addr).await.is_empty(),
            "204 is expected too"
        );

        e1.set_health(500);
        assert!(
            eventually_async(Duration::from_secs(5), || async {
                flags(admin, "app", e1.addr).await == ["active_hc_failed"]
            })
            .await,
            "marked failed"
        );
        let before = e1.hits();
        for _ in 0..10 {
            assert_eq!(get(addr, "/", &[]).await.upstream(), "e2");
        }
        assert_eq!(e1.hits(), before);
        let (_, ext) = cluster_status(admin, "app", e1.addr).await;
        let st = &ext[0]["status"];
        let mine = st["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["address"] == e1.addr.to_string())
            .unwrap();
        assert_eq!(mine["healthy"], false, "{st}");
        assert!(mine["last_error"].as_str().unwrap().contains("500"), "{st}");

        e1.set_health(200);
        assert!(
            eventually_async(Duration::from_secs(5), || async {
                flags(admin, "app", e1.addr).await.is_empty()
            })
            .await,
            "healthy again"
        );
        assert!(
            eventually_async(Duration::from_secs(5), || async {
                get(addr, "/", &[]).await.upstream() == "e1"
            })
            .await,
            "traffic back"
        );
        let text = prometheus(admin).await;
        assert!(
            text.contains(
                "proxy_lb_health_checks_total{cluster=\"app\",result=\"unexpected_status\"}"
            ),
            "{text}"
        );
        assert!(
            text.contains("proxy_lb_health_transitions_total{cluster=\"app\",to=\"unhealthy\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("proxy_lb_health_transitions_total{cluster=\"app\",to=\"healthy\"} 1"),
            "{text}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_checks_find_a_dead_port_and_no_healthy_endpoint_answers_503() {
    let e1 = Upstream::start("e1");
    let dead = free_addr();
    let admin = free_addr();
    let hc = "{interval: 50ms, timeout: 200ms, unhealthy_threshold: 1, healthy_threshold: 1, probe: tcp}";
    let proxy = start(&yaml(&[e1.addr, dead], hc, admin));
    let addr = proxy.addr("main");
    tokio::time::timeout(LIMIT, async {
        assert!(
            eventually_async(Duration::from_secs(5), || async {
                flags(admin, "app", dead).await == ["active_hc_failed"]
            })
            .await,
            "the dead port is marked"
        );
        for _ in 0..6 {
            let r = get(addr, "/", &[]).await;
            assert_eq!((r.status, r.upstream()), (200, "e1"));
        }
        assert!(flags(admin, "app", e1.addr).await.is_empty());
    })
    .await
    .unwrap();

    // Every endpoint failing: a prompt 503 with the reason.
    let admin = free_addr();
    let proxy = start(&yaml(&[dead], hc, admin));
    let addr = proxy.addr("main");
    tokio::time::timeout(LIMIT, async {
        assert!(
            eventually_async(Duration::from_secs(5), || async {
                flags(admin, "app", dead).await == ["active_hc_failed"]
            })
            .await,
            "marked"
        );
        let start = std::time::Instant::now();
        let r = get(addr, "/", &[]).await;
        assert_eq!(r.status, 503, "{}", r.head);
        assert_eq!(
            r.header("x-proxy-error"),
            Some("no_endpoints"),
            "{}",
            r.head
        );
        assert!(start.elapsed() < Duration::from_secs(2));
    })
    .await
    .unwrap();
}

#[test]
fn bad_health_config_is_refused_naming_the_field() {
    let e1 = Upstream::start("e1");
    let admin = free_addr();
    let e = load_error(&yaml(&[e1.addr], "{unhealthy_threshold: 0}", admin));
    assert!(
        e.contains("clusters[0].extensions[0].config.unhealthy_threshold: "),
        "{e}"
    );
    let e = load_error(&yaml(&[e1.addr], "{probe: {http: {path: healthz}}}", admin));
    assert!(
        e.contains("clusters[0].extensions[0].config.probe.http.path: "),
        "{e}"
    );
    let e = load_error(&yaml(&[e1.addr], "{probe: {http: {}, tcp: {}}}", admin));
    assert!(e.contains("clusters[0].extensions[0].config.probe"), "{e}");
    let e = load_error(&yaml(
        &[e1.addr],
        "{probe: {http: {expected_statuses: []}}}",
        admin,
    ));
    assert!(
        e.contains("probe.http.expected_statuses: must not be empty"),
        "{e}"
    );
    let e = load_error(&yaml(&[e1.addr], "{interval: 1 parsec}", admin));
    assert!(e.contains("interval"), "{e}");
}
