//! Outlier detection on real sockets: a backend that starts answering 5xx is ejected
//! after the configured count, the ejection reaches a webhook, the backend stays out
//! while its probe fails (even past its ejection time), comes back after a passed
//! probe; a webhook can remove it for good; the panic threshold keeps the last hosts.

#![allow(clippy::unwrap_used)]

use crate::common_resilience;

use std::{net::SocketAddr, time::Duration};

use common_resilience::{
    cluster_status, flags, get, listener, load_error, prometheus, start, Upstream, Webhook, LIMIT,
};
use proxy_test_support::{eventually_async, free_addr, TestServer};

fn yaml(ups: &[&Upstream], outlier: &str, admin: SocketAddr) -> String {
    let eps: Vec<String> = ups.iter().map(|u| format!("\"{}\"", u.addr)).collect();
    format!(
        "admin: {{address: \"{admin}\"}}\nlisteners:\n{}clusters:\n  - name: app\n    extensions: [{{typed: outlier_detection, config: {outlier}}}]\n    endpoints: [{}]\n",
        listener("main", "[]", "app"),
        eps.join(", ")
    )
}

fn outlier_cfg(hook: &Webhook, extra: &str) -> String {
    format!(
        "{{interval: 100ms, consecutive_5xx: 3, base_ejection_time: 300ms, max_ejection_time: 1s, max_ejection_percent: 50, panic_threshold_percent: 30, readmission: {{probe: {{http: {{path: /healthz}}}}, timeout: 200ms}}, healing: {{webhook: {{url: \"http://{}/ejections\", timeout: 1s}}}}{extra}}}",
        hook.addr
    )
}

/// Sends `n` requests; returns how many succeeded.
async fn load(addr: SocketAddr, n: usize) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        if get(addr, "/", &[]).await.status == 200 {
            ok += 1;
        }
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_backend_is_ejected_reported_and_readmitted_after_a_probe() {
    let (e1, e2, e3) = (
        Upstream::start("e1"),
        Upstream::start("e2"),
        Upstream::start("e3"),
    );
    let hook = Webhook::start(r#"{"action":"keep"}"#);
    let admin = free_addr();
    let proxy = start(&yaml(&[&e1, &e2, &e3], &outlier_cfg(&hook, ""), admin));
    let addr = proxy.addr("main");
    tokio::time::timeout(LIMIT, async {
        assert_eq!(load(addr, 30).await, 30);
        assert!(e1.hits() >= 5, "round robin reaches e1: {}", e1.hits());

        // e1 starts failing, its health path too.
        e1.set_status(500);
        e1.set_health(500);
        let before = e1.hits();
        load(addr, 12).await;
        assert_eq!(
            e1.hits() - before,
            3,
            "ejected right after the 3rd consecutive 5xx"
        );
        let out = e1.hits();
        assert_eq!(load(addr, 30).await, 30, "the others serve everything");
        assert_eq!(e1.hits(), out, "no traffic to the ejected endpoint");

        // The webhook got the ejection.
        assert!(
            eventually_async(Duration::from_secs(5), || async {
                !hook.bodies().is_empty()
            })
            .await,
            "no webhook call"
        );
        let body = &hook.bodies()[0];
        assert_eq!(body["cluster"], "app", "{body}");
        assert_eq!(body["endpoint"], e1.addr.to_string(), "{body}");
        assert_eq!(body["reason"], "consecutive_5xx", "{body}");
        assert_eq!(body["times_ejected"], 1, "{body}");
        assert!(hook.lines()[0].starts_with("POST /ejections "));

        // Past the ejection time, the failing probe keeps it out.
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(e1.probes() >= 1, "probed after its ejection time");
        load(addr, 20).await;
        assert_eq!(e1.hits(), out, "still out while its probe fails");
        assert_eq!(flags(admin, "app", e1.addr).await, ["ejected"]);
        let (_, ext) = cluster_status(admin, "app", e1.addr).await;
        let st = &ext[0]["status"];
        assert_eq!(ext[0]["typed"], "outlier_detection", "{ext}");
        assert_eq!(st["ejected"], 1, "{st}");
        let mine = st["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["address"] == e1.addr.to_string())
            .unwrap();
        assert_eq!(mine["ejected"], true, "{mine}");
        assert_eq!(mine["last_reason"], "consecutive_5xx", "{mine}");

        // The probe passes: back in rotation.
        e1.set_health(200);
        e1.set_status(200);
        assert!(
            eventually_async(Duration::from_secs(5), || async {
                load(addr, 3).await;
                e1.hits() > out
            })
            .await,
            "readmitted after a passed probe"
        );
        let text = prometheus(admin).await;
        assert!(
            text.contains(
                "proxy_lb_outlier_ejections_total{cluster=\"app\",reason=\"consecutive_5xx\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("proxy_lb_outlier_readmissions_total{cluster=\"app\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("proxy_lb_outlier_ejections_active{cluster=\"app\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("proxy_lb_outlier_healing_reports_total{cluster=\"app\"} 1"),
            "{text}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_can_remove_an_endpoint_for_good() {
    let (e1, e2, e3) = (
        Upstream::start("e1"),
        Upstream::start("e2"),
        Upstream::start("e3"),
    );
    let hook = Webhook::start(r#"{"action":"remove"}"#);
    let admin = free_addr();
    let proxy = start(&yaml(&[&e1, &e2, &e3], &outlier_cfg(&hook, ""), admin));
    let addr = proxy.addr("main");
    tokio::time::timeout(LIMIT, async {
        e1.set_status(503);
        load(addr, 12).await;
        assert!(
            eventually_async(Duration::from_secs(5), || async {
                flags(admin, "app", e1.addr).await == ["removed"]
            })
            .await,
            "removed at the webhook's request: {:?}",
            flags(admin, "app", e1.addr).await
        );
        // Healthy again, probes would pass: it stays out.
        e1.set_status(200);
        let out = e1.hits();
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(load(addr, 20).await, 20);
        assert_eq!(e1.hits(), out, "a removed endpoint never comes back");
        assert!(prometheus(admin)
            .await
            .contains("proxy_lb_outlier_removals_total{cluster=\"app\"} 1"));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_threshold_keeps_the_last_hosts_in() {
    let (e1, e2) = (Upstream::start("e1"), Upstream::start("e2"));
    let hook = Webhook::start("{}");
    let admin = free_addr();
    let cfg = format!(
        "{{interval: 100ms, consecutive_5xx: 2, base_ejection_time: 10s, max_ejection_percent: 100, panic_threshold_percent: 50, healing: {{webhook: {{url: \"http://{}/x\"}}}}}}",
        hook.addr
    );
    let proxy = start(&yaml(&[&e1, &e2], &cfg, admin));
    let addr = proxy.addr("main");
    tokio::time::timeout(LIMIT, async {
        e1.set_status(500);
        e2.set_status(500);
        load(addr, 10).await;
        // One of the two is ejected; the other stays in (ejecting it would leave
        // 0% healthy < 50%) and keeps getting traffic.
        let (h1, h2) = (e1.hits(), e2.hits());
        load(addr, 10).await;
        let (d1, d2) = (e1.hits() - h1, e2.hits() - h2);
        assert_eq!(d1 + d2, 10);
        assert!(d1 == 10 || d2 == 10, "one host takes all: {d1} {d2}");
        let text = prometheus(admin).await;
        assert!(
            text.contains("proxy_lb_outlier_ejections_active{cluster=\"app\"} 1"),
            "{text}"
        );
        assert!(
            !text.contains("proxy_lb_outlier_ejections_refused_total{cluster=\"app\"} 0"),
            "{text}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_percentage_ejects_over_an_interval() {
    let (e1, e2, e3) = (
        Upstream::start("e1"),
        Upstream::start("e2"),
        Upstream::start("e3"),
    );
    let hook = Webhook::start("{}");
    let admin = free_addr();
    let cfg = format!(
        "{{interval: 100ms, base_ejection_time: 10s, max_ejection_percent: 50, failure_percentage: {{threshold_percent: 50, minimum_hosts: 3, request_volume: 3}}, healing: {{webhook: {{url: \"http://{}/x\"}}}}}}",
        hook.addr
    );
    let proxy = start(&yaml(&[&e1, &e2, &e3], &cfg, admin));
    let addr = proxy.addr("main");
    tokio::time::timeout(LIMIT, async {
        e2.set_status(502);
        // Keep traffic flowing: an interval needs 3 requests on each of the 3 hosts.
        assert!(
            eventually_async(Duration::from_secs(5), || async {
                load(addr, 9).await;
                flags(admin, "app", e2.addr).await == ["ejected"]
            })
            .await,
            "ejected at the interval"
        );
        assert!(
            eventually_async(Duration::from_secs(5), || async {
                !hook.bodies().is_empty()
            })
            .await,
            "reported"
        );
        assert_eq!(hook.bodies()[0]["reason"], "failure_percentage");
        let before = e2.hits();
        assert_eq!(load(addr, 10).await, 10);
        assert_eq!(e2.hits(), before);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejection_survives_a_reload_that_keeps_the_section() {
    let (e1, e2, e3) = (
        Upstream::start("e1"),
        Upstream::start("e2"),
        Upstream::start("e3"),
    );
    let hook = Webhook::start("{}");
    let admin = free_addr();
    let proxy = start(&yaml(&[&e1, &e2, &e3], &outlier_cfg(&hook, ""), admin));
    let addr = proxy.addr("main");
    tokio::time::timeout(LIMIT, async {
        e1.set_status(500);
        e1.set_health(500);
        load(addr, 12).await;
        assert_eq!(flags(admin, "app", e1.addr).await, ["ejected"]);
        // Same section: the same detector instance carries on (a changed or deleted
        // section ends the ejection: tests/retired_state.rs).
        let same = yaml(&[&e1, &e2, &e3], &outlier_cfg(&hook, ""), admin);
        proxy.reload(&same).unwrap();
        assert_eq!(flags(admin, "app", e1.addr).await, ["ejected"]);
        let (_, ext) = cluster_status(admin, "app", e1.addr).await;
        assert_eq!(ext[0]["status"]["ejected"], 1, "{ext}");
        let out = e1.hits();
        load(addr, 12).await;
        assert_eq!(e1.hits(), out, "still out after the reload");
        e1.set_status(200);
        e1.set_health(200);
        assert!(
            eventually_async(Duration::from_secs(5), || async {
                load(addr, 3).await;
                e1.hits() > out
            })
            .await,
            "readmitted after a passed probe"
        );
    })
    .await
    .unwrap();
}

/// An in-process healing sink: records reports, asks for removal.
#[derive(Debug, Default)]
struct Healer(std::sync::Arc<std::sync::Mutex<Vec<proxy_lb::healing::EjectionReport>>>);

impl proxy_lb::healing::HealingSink for Healer {
    fn report(&self, report: proxy_lb::healing::EjectionReport) -> proxy_lb::healing::ReportFuture {
        self.0.lock().unwrap().push(report);
        Box::pin(async { Ok(proxy_lb::healing::HealingAction::Remove) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_sink_gets_reports_and_removes() {
    let (e1, e2, e3) = (
        Upstream::start("e1"),
        Upstream::start("e2"),
        Upstream::start("e3"),
    );
    let healer = Healer::default();
    let reports = healer.0.clone();
    let mut registry = common_resilience::registry();
    proxy_lb::outlier::register_with_sink(&mut registry, std::sync::Arc::new(healer));
    let admin = free_addr();
    let proxy = TestServer::start(
        &yaml(
            &[&e1, &e2, &e3],
            "{interval: 100ms, consecutive_5xx: 2}",
            admin,
        ),
        registry,
    );
    let addr = proxy.addr("main");
    tokio::time::timeout(LIMIT, async {
        e3.set_status(500);
        load(addr, 9).await;
        assert!(
            eventually_async(Duration::from_secs(5), || async {
                flags(admin, "app", e3.addr).await == ["removed"]
            })
            .await,
            "removed by the sink"
        );
        let reports = reports.lock().unwrap().clone();
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(reports[0].endpoint, e3.addr);
        assert_eq!(reports[0].reason, "consecutive_5xx");
        assert_eq!(&*reports[0].cluster, "app");
    })
    .await
    .unwrap();
}

#[test]
fn bad_outlier_config_is_refused_naming_the_field() {
    let (e1, e2) = (Upstream::start("e1"), Upstream::start("e2"));
    let admin = free_addr();
    let e = load_error(&yaml(&[&e1, &e2], "{max_ejection_percent: 101}", admin));
    assert!(
        e.contains("clusters[0].extensions[0].config.max_ejection_percent: 101 is not a percentage from 0 to 100"),
        "{e}"
    );
    let e = load_error(&yaml(
        &[&e1, &e2],
        "{consecutive_5xx: 3, healing: {webhook: {url: \"ftp://x/y\"}}}",
        admin,
    ));
    assert!(
        e.contains("clusters[0].extensions[0].config.healing.webhook.url: "),
        "{e}"
    );
    let e = load_error(&yaml(&[&e1, &e2], "{consecutive_5xx: -1}", admin));
    assert!(
        e.contains("clusters[0].extensions[0].config.consecutive_5xx: "),
        "{e}"
    );
    let e = load_error(&yaml(
        &[&e1, &e2],
        "{consecutive_5xx: 3, interval: 0s}",
        admin,
    ));
    assert!(
        e.contains("clusters[0].extensions[0].config.interval: must be above zero"),
        "{e}"
    );
    let e = load_error(&yaml(&[&e1, &e2], "{}", admin));
    assert!(
        e.contains("clusters[0].extensions[0].config: no ejection rule is on"),
        "{e}"
    );
    let e = load_error(&yaml(
        &[&e1, &e2],
        "{success_rate: {stdev_factor: 1900}, failure_percentage: {threshold: 85}}",
        admin,
    ));
    assert!(
        e.contains("clusters[0].extensions[0].config.failure_percentage.threshold: unknown field"),
        "the old integer threshold is refused: {e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removals_count_against_max_ejection_percent() {
    let ups: Vec<Upstream> = (1..=5).map(|i| Upstream::start(&format!("e{i}"))).collect();
    let hook = Webhook::start(r#"{"action":"remove"}"#);
    let admin = free_addr();
    let cfg = format!(
        "{{interval: 50ms, consecutive_5xx: 2, base_ejection_time: 1h, max_ejection_time: 2h, max_ejection_percent: 20, panic_threshold_percent: 0, healing: {{webhook: {{url: \"http://{}/x\", timeout: 1s}}}}}}",
        hook.addr
    );
    let proxy = start(&yaml(&ups.iter().collect::<Vec<_>>(), &cfg, admin));
    let addr = proxy.addr("main");
    let out = || async {
        let mut n = 0;
        for u in &ups {
            n += usize::from(!flags(admin, "app", u.addr).await.is_empty());
        }
        n
    };
    tokio::time::timeout(LIMIT, async {
        for u in &ups {
            u.set_status(500);
        }
        let mut most = 0;
        for _ in 0..30 {
            load(addr, 5).await;
            tokio::time::sleep(Duration::from_millis(30)).await;
            most = most.max(out().await);
        }
        assert_eq!(
            most, 1,
            "20% of 5: one endpoint out at most, removed or ejected"
        );
        assert!(
            eventually_async(Duration::from_secs(5), || async {
                let mut removed = 0;
                for u in &ups {
                    removed += usize::from(flags(admin, "app", u.addr).await == ["removed"]);
                }
                removed == 1
            })
            .await,
            "the webhook removed one"
        );
        let text = prometheus(admin).await;
        assert!(
            text.contains("proxy_lb_outlier_removals_total{cluster=\"app\"} 1"),
            "{text}"
        );
    })
    .await
    .unwrap();
}
