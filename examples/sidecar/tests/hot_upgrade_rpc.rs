//! Hot upgrade with live Bolt connections (protocol version 3): multiplexed Bolt
//! clients keep calls in flight through several consecutive upgrades of the sidecar,
//! against an upstream that answers each call after a delay, so that calls are in
//! flight at every hand-off. Each old process stops reading a connection at its
//! moment, writes every answer it owes, then hands the socket over with the bytes it
//! had not parsed (frames are written in two parts, so some are split across the
//! hand-off; heartbeats go too). No call fails, no answer is lost or comes twice, no
//! connection is reset or closed, and no client connects again.
//!
//! The counters go on: the codec's request counter of the last process counts every
//! call of every process. A new process started with a bad config, and one that dies
//! holding the sockets before it said ready, change nothing: the old one keeps every
//! connection and the next upgrade works.
//!
//! The same with the real client, sofa-rpc-node (50 clients, 2 `echoAfter` calls in
//! flight each, against sofa-rpc-node's server, through 20 consecutive upgrades): no call
//! fails, no socket error, one connect per client. It needs node and the packages `scripts/deps/proxy-codec.sh`
//! installs; without them it prints `SKIPPED:` and passes.

#[path = "hot_upgrade/bolt.rs"]
mod bolt;
use crate::common;
use crate::sofa;
// The HTTP/1.1 exchanges of the helpers are not used here.
use crate::support;

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use bolt::*;
use common::*;
use proxy_test_support::{temp::TempDir, with_timeout};
use sofa::{sofa_rpc_node, SofaClients, SofaServer};
use support::*;

/// Bolt clients, one connection each.
const CLIENTS: u32 = 8;
/// How long the upstream takes to answer a call.
const UPSTREAM_DELAY: Duration = Duration::from_millis(150);
/// A call per client this often (after its two writes 5 ms apart): about 10 calls
/// in flight per connection, and a third of the time half a frame in the socket.
const PACE: Duration = Duration::from_millis(10);

/// The codec's request counter on `admin`'s page.
async fn bolt_requests(admin: std::net::SocketAddr) -> f64 {
    let r = proxy_test_support::client::request(
        admin,
        http::Method::GET,
        "/stats/prometheus",
        &[],
        bytes::Bytes::new(),
    )
    .await
    .expect("metrics");
    metric_sum(
        &String::from_utf8_lossy(&r.body),
        &["proxy_codec_downstream_requests_total", "protocol=\"bolt\""],
    )
}

/// Starts `name` with `--upgrade`, waits for `old` to exit 0 having handed its
/// connections over, and for calls to flow on.
async fn upgrade_rpc(
    name: &'static str,
    old: &mut ProxyProcess,
    dir: &TempDir,
    config: &std::path::Path,
    tally: &RpcTally,
) -> ProxyProcess {
    let (new, logs) = take_over(name, old, dir, config, "500ms").await;
    let (all, bolt) = (handed_connections(&logs), handed(&logs, "protocol"));
    assert!(
        all >= u64::from(CLIENTS) && bolt >= u64::from(CLIENTS),
        "{all} connections ({bolt} Bolt) handed over by {}\n{logs}",
        old.name,
    );
    tally
        .split
        .fetch_add(handed(&logs, "with_unread"), Ordering::Relaxed);
    let before = tally.ok.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(5);
    while tally.ok.load(Ordering::Relaxed) < before + 100 {
        assert!(
            Instant::now() < deadline,
            "no calls answered after the upgrade\n{}",
            new.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    new
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bolt_connections_go_over_with_calls_in_flight_through_upgrades() {
    with_timeout(Duration::from_secs(60), async {
        let _heavy = heavy_test_lock().await;
        let upstream = slow_upstream(UPSTREAM_DELAY).await;
        let mut cfg = ConfigBuilder::new()
            .routes(vec![route("r", "/", "c", "")])
            .cluster(format!("{{name: c, protocol: bolt, endpoints: [\"{upstream}\"]}}"));
        cfg.top_extra = "runtime:\n  worker_threads: 2\n  drain_timeout: 5s\n".into();
        let dir = TempDir::new("hot-upgrade-rpc");
        let config = dir.join("config.yaml");
        std::fs::write(&config, cfg.yaml()).expect("config");
        let bad = dir.join("bad.yaml");
        std::fs::write(&bad, cfg.yaml().replace("cluster: c", "cluster: missing")).expect("bad");
        let mut old = start_sidecar("first", &dir, &config, &[]);
        old.wait_ready(cfg.admin).await;

        let tally = Arc::new(RpcTally::default());
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| tokio::spawn(bolt_client(cfg.listen, i, PACE, tally.clone())))
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(tally.ok.load(Ordering::Relaxed) > 0, "{:?}\n{}", tally.failures(), old.logs());

        let started = Instant::now();
        for (round, name) in ["second", "third", "fourth"].into_iter().enumerate() {
            if round == 1 {
                // A new process whose config fails: it exits, the old one keeps
                // serving every connection it holds.
                let mut failed = start_sidecar("bad", &dir, &bad, &["--upgrade"]);
                let status = failed.wait_exit(Duration::from_secs(10)).await;
                assert!(!status.success(), "a bad config was accepted\n{}", failed.logs());
                assert!(old.running(), "{} stopped\n{}", old.name, old.logs());
                let before = tally.ok.load(Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(300)).await;
                assert!(tally.ok.load(Ordering::Relaxed) > before + 50, "{}", old.logs());
                // A new process that dies holding the sockets, before it said
                // ready: the old one goes on serving and accepting upgrades.
                let path = dir.join("upgrade.sock");
                tokio::task::spawn_blocking(move || {
                    let mut upgrade = proxy_upgrade::UpgradeClient::new(path)
                        .connect()
                        .expect("the old process answers");
                    assert!(!upgrade.take_sockets().is_empty());
                })
                .await
                .expect("a dying new process");
                let deadline = Instant::now() + Duration::from_secs(5);
                while !old.logs().contains("upgrade abandoned; still serving") {
                    assert!(Instant::now() < deadline, "{}", old.logs());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let before = tally.ok.load(Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(300)).await;
                assert!(tally.ok.load(Ordering::Relaxed) > before + 50, "{}", old.logs());
                assert!(old.running(), "{} stopped\n{}", old.name, old.logs());
            }
            // What the old process counted, before it goes.
            let counted = bolt_requests(cfg.admin).await;
            old = upgrade_rpc(name, &mut old, &dir, &config, &tally).await;
            old.wait_ready(cfg.admin).await;
            let now = bolt_requests(cfg.admin).await;
            assert!(now >= counted, "{name}: the request counter went from {counted} to {now}");
        }
        eprintln!("3 upgrades in {:?}", started.elapsed());

        tally.stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.await.expect("client");
        }
        let failures = tally.failures();
        let (sent, ok) = (tally.sent.load(Ordering::Relaxed), tally.ok.load(Ordering::Relaxed));
        let connects = tally.connects.load(Ordering::Relaxed);
        eprintln!(
            "bolt through 3 upgrades: {sent} calls sent, {ok} answered, {} heartbeats, {} failures, \
             {connects} connections opened by {CLIENTS} clients, {} handed over with bytes unread",
            tally.heartbeats.load(Ordering::Relaxed),
            failures.len(),
            tally.split.load(Ordering::Relaxed),
        );
        assert!(failures.is_empty(), "failures: {failures:#?}\n{}", old.logs());
        assert_eq!(ok, sent, "every call answered once");
        assert_eq!(connects, u64::from(CLIENTS), "clients connected again");
        assert!(tally.heartbeats.load(Ordering::Relaxed) > 0);
        // Some connection went with part of a frame (or whole frames) unread, which
        // the new process completed.
        assert!(tally.split.load(Ordering::Relaxed) > 0, "no frame was split by a hand-off");
        // Every call was read by one of the processes; the last one counts them all.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let counted = bolt_requests(cfg.admin).await;
            if counted >= sent as f64 {
                break;
            }
            assert!(Instant::now() < deadline, "the last process counts {counted} of {sent} calls");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(old);
    })
    .await;
}

// === the real client: sofa-rpc-node ===

/// sofa-rpc-node clients, one connection each, two calls in flight each.
const SOFA_CLIENTS: u32 = 50;

/// The processes that take over, one after the other.
const UPGRADES: [&str; 20] = [
    "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9", "u10", "u11", "u12", "u13", "u14", "u15",
    "u16", "u17", "u18", "u19", "u20",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sofa_rpc_node_clients_keep_their_connections_through_upgrades() {
    let Some(modules) = sofa_rpc_node() else {
        return;
    };
    with_timeout(Duration::from_secs(90), async {
        let _heavy = heavy_test_lock().await;
        let server = SofaServer::start(&modules).await;
        let port = server.port;
        let mut cfg = ConfigBuilder::new()
            .routes(vec![route("r", "/", "c", "")])
            .cluster(format!(
                "{{name: c, protocol: bolt, endpoints: [\"127.0.0.1:{port}\"]}}"
            ));
        cfg.top_extra = "runtime:\n  worker_threads: 2\n  drain_timeout: 5s\n".into();
        let dir = TempDir::new("hot-upgrade-sofa");
        let config = dir.join("config.yaml");
        std::fs::write(&config, cfg.yaml()).expect("config");
        let mut old = start_sidecar("first", &dir, &config, &[]);
        old.wait_ready(cfg.admin).await;

        let clients =
            SofaClients::start(&modules, cfg.listen, dir.join("stop"), SOFA_CLIENTS, 2).await;
        // Calls flow before the first upgrade.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut with_unread = 0;
        let started = Instant::now();
        for name in UPGRADES {
            let (new, logs) = take_over(name, &mut old, &dir, &config, "500ms").await;
            assert!(
                handed(&logs, "protocol") >= u64::from(SOFA_CLIENTS),
                "{} handed over too few\n{logs}",
                old.name
            );
            with_unread += handed(&logs, "with_unread");
            old = new;
            old.wait_ready(cfg.admin).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (report, clean) = clients.finish().await;
        eprintln!(
            "sofa-rpc-node through {} upgrades in {:?}: {report}; {with_unread} handed over \
             with bytes unread",
            UPGRADES.len(),
            started.elapsed()
        );
        assert!(clean, "{report}\n{}", old.logs());
        drop(server);
    })
    .await;
}
