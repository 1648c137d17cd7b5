//! The hot upgrade under mixed load, on real sockets: 100 keep-alive HTTP/1.1
//! connections (wrk-style: a request after each answer, no retry) and 50 sofa-rpc-node
//! Bolt clients (one multiplexed connection each, two calls in flight each) run
//! together through 20 consecutive upgrades of the sidecar binary. Both upstreams
//! answer after a delay (HTTP 50 ms, Bolt 150 ms), so answers are in flight at every
//! hand-off.
//!
//! What it shows: no request or call fails, no connection is reset or closed, no
//! client connects again (each counts its connects), every request the HTTP upstream
//! saw was answered to its client once, and no process accepts a connection after
//! the first: each only adopts the 150 connections handed to it.
//!
//! How accepts are counted per process: `proxy_listener_connections_total` counts
//! what a process accepted *and* adopted, plus (counters go on across an upgrade) the
//! final count of the process before it. So, read once the old process has exited
//! and the new one has adopted everything, the counter grows from one upgrade to the
//! next by exactly what the new process adopted plus whatever either of the two
//! accepted meanwhile; the test asserts that growth equals the adoption count the new
//! process logs, so the accepts of every process after the first are 0, and that the
//! first accepted exactly 150.
//!
//! It needs node and the packages `scripts/deps/proxy-codec.sh` installs; without
//! them it prints `SKIPPED:` and passes. CI runs it alone (`.config/nextest.toml`).

use crate::common;
use crate::http_load;
use crate::sofa;
use crate::support;

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use common::*;
use http_load::{keep_alive_load, Tally};
use proxy_test_support::{temp::TempDir, upstream::response, with_timeout, Upstream};
use sofa::{sofa_rpc_node, SofaClients, SofaServer};
use support::*;

/// Keep-alive HTTP/1.1 connections.
const HTTP_CONNECTIONS: u32 = 100;
/// sofa-rpc-node clients, one connection each.
const BOLT_CONNECTIONS: u32 = 50;
/// Consecutive upgrades.
const UPGRADES: usize = 20;
/// How long the HTTP upstream takes to answer.
const HTTP_DELAY: Duration = Duration::from_millis(50);

/// The names of the processes that take over, one after the other.
fn names() -> Vec<&'static str> {
    (1..=UPGRADES)
        .map(|i| &*Box::leak(format!("u{i}").into_boxed_str()))
        .collect()
}

/// Waits until `admin`'s connection counter of listener `main` reaches `at_least`
/// (within 5 s), then reads it once more after the adoptions have settled.
async fn settled_connections(admin: std::net::SocketAddr, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    while connections_total(admin, "main").await < at_least && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    connections_total(admin, "main").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_bolt_load_through_20_upgrades_keeps_every_connection() {
    let Some(modules) = sofa_rpc_node() else {
        return;
    };
    with_timeout(Duration::from_secs(90), async {
        let _heavy = heavy_test_lock().await;
        let web = Upstream::http_async(|_| async {
            tokio::time::sleep(HTTP_DELAY).await;
            response(200, "hot")
        });
        let bolt = SofaServer::start(&modules).await;
        let mut cfg = ConfigBuilder::new()
            .routes(vec![
                route("h", "/hot", "web", ""),
                route("r", "/", "c", ""),
            ])
            .cluster(cluster("web", web.addr, ""))
            .cluster(format!(
                "{{name: c, protocol: bolt, endpoints: [\"127.0.0.1:{}\"]}}",
                bolt.port
            ));
        cfg.top_extra = "runtime:\n  worker_threads: 2\n  drain_timeout: 5s\n".into();
        let dir = TempDir::new("hot-upgrade-load");
        let config = dir.join("config.yaml");
        std::fs::write(&config, cfg.yaml()).expect("config");
        let mut old = start_sidecar("first", &dir, &config, &[]);
        old.wait_ready(cfg.admin).await;

        let tally = Arc::new(Tally::default());
        let http: Vec<_> = (0..HTTP_CONNECTIONS)
            .map(|_| {
                let pause = Duration::from_millis(2);
                tokio::spawn(keep_alive_load(cfg.listen, tally.clone(), pause))
            })
            .collect();
        let clients =
            SofaClients::start(&modules, cfg.listen, dir.join("stop"), BOLT_CONNECTIONS, 2).await;
        // Every client has sent its first call (a connection that has not is handed
        // over unsniffed, without its protocol).
        tokio::time::sleep(Duration::from_millis(500)).await;
        let total = u64::from(HTTP_CONNECTIONS + BOLT_CONNECTIONS);
        // The first process accepted every connection, once.
        let mut counted = settled_connections(cfg.admin, total).await;
        assert_eq!(
            counted,
            total,
            "accepted by the first process\n{}",
            old.logs()
        );
        assert!(
            tally.ok.load(Ordering::Relaxed) > 0,
            "{:?}",
            tally.failures()
        );

        let started = Instant::now();
        let (mut with_unread, mut handed_total) = (0, 0);
        for name in names() {
            let before = tally.ok.load(Ordering::Relaxed);
            let (new, logs) = take_over(name, &mut old, &dir, &config, "500ms").await;
            // Every connection went over, the Bolt ones with their calls answered.
            let (handed_all, handed_bolt) = (handed_connections(&logs), handed(&logs, "protocol"));
            assert_eq!(
                (handed_all, handed_bolt),
                (total, u64::from(BOLT_CONNECTIONS)),
                "{} handed over (all, bolt)\n{logs}",
                old.name
            );
            handed_total += handed_all;
            with_unread += handed(&logs, "with_unread");
            old = new;
            old.wait_ready(cfg.admin).await;
            let adopted = adopted(&old).await;
            assert_eq!(adopted, total, "{} adopted\n{}", old.name, old.logs());
            // Accepted by the old process after the last reading, or by this one: none.
            let now = settled_connections(cfg.admin, counted + adopted).await;
            assert_eq!(
                now - counted,
                adopted,
                "{name}: connections accepted besides the {adopted} adopted: {}",
                (now - counted).saturating_sub(adopted)
            );
            counted = now;
            assert!(
                tally.ok.load(Ordering::Relaxed) > before,
                "no HTTP request answered during the upgrade to {name}"
            );
        }
        let elapsed = started.elapsed();

        tally.stop.store(true, Ordering::Relaxed);
        let (report, clean) = clients.finish().await;
        for task in http {
            task.await.expect("HTTP client");
        }
        let failures = tally.failures();
        let ok = tally.ok.load(Ordering::Relaxed);
        let connects = tally.keep_alive_connects.load(Ordering::Relaxed);
        eprintln!(
            "{UPGRADES} upgrades in {elapsed:?} under {HTTP_CONNECTIONS} keep-alive HTTP/1.1 \
             and {BOLT_CONNECTIONS} Bolt connections: {ok} HTTP requests answered, {} failed, \
             {connects} HTTP connects; {handed_total} connections handed over ({with_unread} \
             with bytes unread); the listener's counter at {counted} (= {total} accepted + \
             {UPGRADES} x {total} adopted); sofa-rpc-node: {report}",
            failures.len()
        );
        assert!(
            failures.is_empty(),
            "HTTP failures: {failures:#?}\n{}",
            old.logs()
        );
        assert_eq!(
            connects,
            u64::from(HTTP_CONNECTIONS),
            "HTTP clients connected again"
        );
        assert!(clean, "sofa-rpc-node: {report}\n{}", old.logs());
        // Every request the upstream saw was answered to its client: none lost in a
        // hand-off, none sent twice.
        assert_eq!(web.hits(), ok, "upstream requests vs answers");
        assert_eq!(counted, total * (UPGRADES as u64 + 1));
        drop(old);
        drop(bolt);
    })
    .await;
}
