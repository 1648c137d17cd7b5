//! State goes with the config that made it, on real sockets: an endpoint ejected by
//! outlier detection, removed at a healing sink's request or failed by health checks
//! serves again at once when a reload deletes (or changes) the section whose
//! capability set the flag; a reload that keeps the section keeps the flag.

#![allow(clippy::unwrap_used)]

use crate::common_resilience;

use std::{net::SocketAddr, time::Duration};

use common_resilience::{flags, get, listener, start, Upstream, Webhook, LIMIT};
use proxy_test_support::{eventually_async, free_addr};

/// Cluster `app` of `ups` with `extensions` (a YAML flow list).
fn yaml(ups: &[&Upstream], extensions: &str, admin: SocketAddr) -> String {
    let eps: Vec<String> = ups.iter().map(|u| format!("\"{}\"", u.addr)).collect();
    format!(
        "admin: {{address: \"{admin}\"}}\nlisteners:\n{}clusters:\n  - name: app\n    extensions: {extensions}\n    endpoints: [{}]\n",
        listener("main", "[]", "app"),
        eps.join(", ")
    )
}

/// Outlier detection with a long ejection: only a reload can bring an endpoint back
/// within a test. `extra` adds keys.
fn outlier(extra: &str) -> String {
    format!(
        "[{{typed: outlier_detection, config: {{interval: 50ms, consecutive_5xx: 3, base_ejection_time: 1h, max_ejection_time: 2h, max_ejection_percent: 50, panic_threshold_percent: 0{extra}}}}}]"
    )
}

/// Sends `n` requests; returns how many `u` served.
async fn served_by(addr: SocketAddr, u: &Upstream, n: usize) -> u64 {
    let before = u.hits();
    for _ in 0..n {
        get(addr, "/", &[]).await;
    }
    u.hits() - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ejection_ends_when_a_reload_removes_outlier_detection() {
    let (e1, e2, e3) = (
        Upstream::start("e1"),
        Upstream::start("e2"),
        Upstream::start("e3"),
    );
    let admin = free_addr();
    let ups = [&e1, &e2, &e3];
    let proxy = start(&yaml(&ups, &outlier(""), admin));
    let addr = proxy.addr("main");
    tokio::time::timeout(LIMIT, async {
        e1.set_status(500);
        served_by(addr, &e1, 12).await;
        assert_eq!(flags(admin, "app", e1.addr).await, ["ejected"]);
        e1.set_status(200);
        // The same section: the same detection, the ejection stays.
        proxy.reload(&yaml(&ups, &outlier(""), admin)).unwrap();
        assert_eq!(flags(admin, "app", e1.addr).await, ["ejected"]);
        assert_eq!(served_by(addr, &e1, 9).await, 0, "still out");

        // No outlier detection any more: nothing keeps it out.
        proxy.reload(&yaml(&ups, "[]", admin)).unwrap();
        assert!(
            flags(admin, "app", e1.addr).await.is_empty(),
            "flags right after the reload: {:?}",
            flags(admin, "app", e1.addr).await
        );
        assert_eq!(served_by(addr, &e1, 9).await, 3, "serves its share at once");

        // Ejected by a detection whose section then changes: the new one starts
        // with every endpoint in.
        proxy.reload(&yaml(&ups, &outlier(""), admin)).unwrap();
        e1.set_status(500);
        served_by(addr, &e1, 12).await;
        assert_eq!(flags(admin, "app", e1.addr).await, ["ejected"]);
        e1.set_status(200);
        proxy
            .reload(&yaml(
                &ups,
                &outlier(", consecutive_gateway_failure: 5"),
                admin,
            ))
            .unwrap();
        assert!(flags(admin, "app", e1.addr).await.is_empty());
        assert_eq!(served_by(addr, &e1, 9).await, 3);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_ends_with_the_section_that_asked_for_it() {
    let (e1, e2, e3) = (
        Upstream::start("e1"),
        Upstream::start("e2"),
        Upstream::start("e3"),
    );
    let hook = Webhook::start(r#"{"action":"remove"}"#);
    let healing = format!(
        ", healing: {{webhook: {{url: \"http://{}/ejections\", timeout: 1s}}}}",
        hook.addr
    );
    let admin = free_addr();
    let ups = [&e1, &e2, &e3];
    let proxy = start(&yaml(&ups, &outlier(&healing), admin));
    let addr = proxy.addr("main");
    let removed = || async {
        eventually_async(Duration::from_secs(5), || async {
            flags(admin, "app", e1.addr).await == ["removed"]
        })
        .await
    };
    tokio::time::timeout(LIMIT, async {
        e1.set_status(500);
        served_by(addr, &e1, 12).await;
        assert!(removed().await, "removed at the webhook's request");
        e1.set_status(200);
        proxy
            .reload(&yaml(&ups, &outlier(&healing), admin))
            .unwrap();
        assert_eq!(
            flags(admin, "app", e1.addr).await,
            ["removed"],
            "same section"
        );
        assert_eq!(served_by(addr, &e1, 9).await, 0);

        // The section loses its webhook: a new detection, the removal is undone.
        proxy.reload(&yaml(&ups, &outlier(""), admin)).unwrap();
        assert!(flags(admin, "app", e1.addr).await.is_empty());
        assert_eq!(served_by(addr, &e1, 9).await, 3);

        // Removed again, then the extension is deleted: back at once.
        proxy
            .reload(&yaml(&ups, &outlier(&healing), admin))
            .unwrap();
        e1.set_status(500);
        served_by(addr, &e1, 12).await;
        assert!(removed().await, "removed again");
        e1.set_status(200);
        proxy.reload(&yaml(&ups, "[]", admin)).unwrap();
        assert!(flags(admin, "app", e1.addr).await.is_empty());
        assert_eq!(served_by(addr, &e1, 9).await, 3);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_health_check_ends_when_the_check_goes() {
    let (e1, e2) = (Upstream::start("e1"), Upstream::start("e2"));
    let admin = free_addr();
    let ups = [&e1, &e2];
    let hc = "[{typed: health_check, config: {interval: 50ms, timeout: 200ms, unhealthy_threshold: 1, probe: {http: {path: /healthz}}}}]";
    let proxy = start(&yaml(&ups, hc, admin));
    let addr = proxy.addr("main");
    tokio::time::timeout(LIMIT, async {
        e1.set_health(500);
        assert!(
            eventually_async(Duration::from_secs(5), || async {
                flags(admin, "app", e1.addr).await == ["active_hc_failed"]
            })
            .await,
            "failed its checks"
        );
        assert_eq!(served_by(addr, &e1, 6).await, 0);
        proxy.reload(&yaml(&ups, "[]", admin)).unwrap();
        assert!(flags(admin, "app", e1.addr).await.is_empty());
        assert_eq!(served_by(addr, &e1, 6).await, 3, "serves at once");
    })
    .await
    .unwrap();
}
