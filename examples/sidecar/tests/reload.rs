//! Live reload under load: the config file is rewritten to switch a route between two
//! clusters and reloaded with `POST /reload` and SIGHUP while clients keep sending
//! keep-alive requests; no request may fail. An invalid config is refused with 400
//! and the old one keeps serving.

use crate::common;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::*;
use http::{Method, StatusCode};
use proxy_test_support::{client, with_timeout, Upstream};

const LIMIT: Duration = Duration::from_secs(90);
const CLIENTS: usize = 8;

fn config_to(base: &ConfigBuilder, cluster_name: &str) -> String {
    let mut cfg = base.clone();
    cfg.vhosts.clear();
    cfg.routes(vec![route("switch", "/", cluster_name, "")])
        .yaml()
}

/// Polls fresh connections until `GET /` answers `want`, up to `limit`.
async fn wait_for_upstream(addr: std::net::SocketAddr, want: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(r) = client::request(addr, Method::GET, "/", &[], Bytes::new()).await {
            last = r.text();
            if r.status == StatusCode::OK && last == want {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("route never switched to {want:?} within {limit:?}; last answer {last:?}");
}

#[derive(Default)]
struct LoadStats {
    ok: AtomicUsize,
    failures: Mutex<Vec<String>>,
    /// Answers by upstream name, counted only after the first switch.
    seen_after_switch: Mutex<HashMap<String, usize>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_loses_no_request() {
    let _heavy = heavy_test_lock().await;
    with_timeout(LIMIT, async {
        let alpha = Upstream::named("alpha");
        let beta = Upstream::named("beta");
        let base = ConfigBuilder::new()
            .cluster(cluster("a", alpha.addr, ""))
            .cluster(cluster("b", beta.addr, ""));
        let listen = base.listen;
        let sc = Sidecar::start(&config_to(&base, "a"), base.admin).await;
        wait_for_upstream(listen, "alpha", Duration::from_secs(2)).await;

        let stats = Arc::new(LoadStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let switched = Arc::new(AtomicBool::new(false));
        let mut clients = Vec::new();
        for i in 0..CLIENTS {
            let (stats, stop, switched) = (stats.clone(), stop.clone(), switched.clone());
            clients.push(tokio::spawn(async move {
                let mut c = client::H1Client::new(listen);
                let mut n = 0usize;
                // Bounded: stops on the flag, or after 20 s whatever happens.
                let deadline = Instant::now() + Duration::from_secs(20);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let after_switch = switched.load(Ordering::Relaxed);
                    let res = tokio::time::timeout(
                        Duration::from_secs(5),
                        c.request(Method::GET, &format!("/c{i}/{n}"), &[], Bytes::new()),
                    )
                    .await;
                    n += 1;
                    match res {
                        Ok(Ok(r)) if r.status == StatusCode::OK => {
                            stats.ok.fetch_add(1, Ordering::Relaxed);
                            if after_switch {
                                *stats
                                    .seen_after_switch
                                    .lock()
                                    .expect("lock")
                                    .entry(r.text())
                                    .or_default() += 1;
                            }
                        }
                        Ok(Ok(r)) => stats.failures.lock().expect("lock").push(format!(
                            "client {i} request {n}: status {} x-proxy-error {:?} body {:?}",
                            r.status,
                            r.header("x-proxy-error"),
                            r.text()
                        )),
                        Ok(Err(e)) => stats
                            .failures
                            .lock()
                            .expect("lock")
                            .push(format!("client {i} request {n}: {e}")),
                        Err(_) => stats
                            .failures
                            .lock()
                            .expect("lock")
                            .push(format!("client {i} request {n}: timed out")),
                    }
                }
                c.connects
            }));
        }

        // ~3 s of switching: a -> b -> a ... by POST /reload, every third by SIGHUP.
        let mut current = "alpha";
        for step in 0..8 {
            tokio::time::sleep(Duration::from_millis(350)).await;
            let (cluster_name, want) = if current == "alpha" {
                ("b", "beta")
            } else {
                ("a", "alpha")
            };
            sc.write_config(&config_to(&base, cluster_name));
            if step % 3 == 2 {
                sc.signal("HUP");
                wait_for_upstream(listen, want, Duration::from_secs(5)).await;
            } else {
                let r = sc.admin_post("/reload").await;
                assert_eq!(
                    r.status,
                    StatusCode::OK,
                    "POST /reload of a good config: {}",
                    r.text()
                );
                // The swap is done when /reload answers: a new request sees it.
                let r = client::request(listen, Method::GET, "/", &[], Bytes::new())
                    .await
                    .expect("request right after reload");
                assert_eq!(
                    r.text(),
                    want,
                    "POST /reload answered 200 but the old route still serves"
                );
            }
            current = want;
            switched.store(true, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.store(true, Ordering::Relaxed);
        let mut connects = 0;
        for c in clients {
            connects += c.await.expect("client task");
        }

        let failures = stats.failures.lock().expect("lock").clone();
        let ok = stats.ok.load(Ordering::Relaxed);
        assert!(
            failures.is_empty(),
            "{} of {} requests failed during reloads; first ones:\n{}",
            failures.len(),
            failures.len() + ok,
            failures
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(ok >= 100, "the load loop ran ({ok} requests)");
        let seen = stats.seen_after_switch.lock().expect("lock").clone();
        assert!(
            seen.get("alpha").copied().unwrap_or(0) > 0
                && seen.get("beta").copied().unwrap_or(0) > 0,
            "both upstreams answered after the first switch: {seen:?}"
        );
        assert_eq!(
            seen.keys()
                .filter(|k| *k != "alpha" && *k != "beta")
                .count(),
            0,
            "{seen:?}"
        );
        eprintln!(
            "reload under load: {ok} requests ok, {connects} client connections, seen {seen:?}"
        );

        // An invalid config is refused and the running one stays.
        let good_now = current;
        let bad = config_to(&base, "nope");
        sc.write_config(&bad);
        let r = sc.admin_post("/reload").await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "POST /reload of an invalid config: {}",
            r.text()
        );
        assert!(
            r.text().contains("nope") && r.text().contains("cluster"),
            "the 400 names the error: {:?}",
            r.text()
        );
        let r = client::request(listen, Method::GET, "/", &[], Bytes::new())
            .await
            .expect("request after bad reload");
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.text(),
            good_now,
            "the old config keeps serving after a refused reload"
        );

        // Broken YAML by SIGHUP: refused too, the process stays up and serving.
        sc.write_config("listeners: [ this is not yaml");
        sc.signal("HUP");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = client::request(listen, Method::GET, "/", &[], Bytes::new())
            .await
            .expect("request after bad SIGHUP");
        assert_eq!(
            r.text(),
            good_now,
            "the old config keeps serving after a refused SIGHUP reload"
        );
        let ready = sc.admin_get("/ready").await;
        assert_eq!(ready.status, StatusCode::OK, "still ready");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_dump_follows_reload() {
    with_timeout(Duration::from_secs(30), async {
        let alpha = Upstream::named("alpha");
        let beta = Upstream::named("beta");
        let base = ConfigBuilder::new()
            .cluster(cluster("a", alpha.addr, ""))
            .cluster(cluster("b", beta.addr, ""));
        let sc = Sidecar::start(&config_to(&base, "a"), base.admin).await;
        let dump = sc.admin_get("/config_dump").await;
        assert_eq!(dump.status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_slice(&dump.body).expect("config_dump is JSON");
        let route_cluster = |v: &serde_json::Value| {
            v["listeners"][0]["virtual_hosts"][0]["routes"][0]["cluster"]
                .as_str()
                .map(str::to_owned)
        };
        assert_eq!(route_cluster(&v).as_deref(), Some("a"), "{v}");

        sc.write_config(&config_to(&base, "b"));
        let r = sc.admin_post("/reload").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let v: serde_json::Value = serde_json::from_slice(&sc.admin_get("/config_dump").await.body)
            .expect("config_dump is JSON");
        assert_eq!(
            route_cluster(&v).as_deref(),
            Some("b"),
            "config_dump shows the reloaded config: {v}"
        );
    })
    .await;
}
