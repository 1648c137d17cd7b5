//! Hot upgrade of the sidecar binary: a second process started with `--upgrade` takes
//! the listeners of the first over its `--upgrade-socket`, under steady HTTP/1.1 load
//! (keep-alive connections and a new connection per request), the first drains and
//! exits 0, and the second serves on the same port; then a third takes over from the
//! second the same way. No request fails, none is retried, and no keep-alive client
//! connects again: the old process hands its idle keep-alive connections over at a
//! request boundary (protocol version 2) instead of closing them, so each client
//! keeps its one socket through both upgrades.
//!
//! A client that sent half a request head, and one that sent nothing yet, when the
//! hand-off happens get their answers from the new process on the same sockets.
//!
//! The metrics go on: after an upgrade, a route's request counter and its
//! request-duration histogram (count, buckets, sum) read the old process's final
//! values plus what the new process served (protocol version 6).

use crate::common;
use crate::http_load;
use crate::support;

use std::{
    path::Path,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::*;
use http::{Method, StatusCode};
use http_load::*;
use proxy_test_support::{client, temp::TempDir, with_timeout, Upstream};
use support::*;
use tokio::{io::AsyncWriteExt, net::TcpStream};

/// Starts `name` with `--upgrade`, waits for `old` to exit 0, and checks that the new
/// process took the sockets over rather than binding them.
async fn upgrade(
    name: &'static str,
    old: &mut ProxyProcess,
    dir: &TempDir,
    config: &Path,
    tally: &Tally,
) -> ProxyProcess {
    let before = tally.ok.load(Ordering::Relaxed);
    let mut new = start_sidecar(name, dir, config, &["--upgrade"]);
    let status = old.wait_exit(Duration::from_secs(20)).await;
    assert!(
        status.success(),
        "{} exit status {status}\n{}",
        old.name,
        old.logs()
    );
    assert!(new.running(), "{name} exited\n{}", new.logs());
    let logs = new.logs();
    assert!(
        logs.contains("listening on handed-in sockets") && logs.contains("took over"),
        "{name} did not take the sockets over\n{logs}"
    );
    assert!(
        old.logs().contains("handed the listeners over"),
        "{}",
        old.logs()
    );
    // Every keep-alive client's connection went over (and maybe some new ones).
    let handed = handed_connections(&old.logs());
    assert!(
        handed >= 4,
        "{handed} connections handed over\n{}",
        old.logs()
    );
    // Traffic kept flowing, and flows on after the old process is gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    let after_exit = tally.ok.load(Ordering::Relaxed);
    while tally.ok.load(Ordering::Relaxed) < after_exit + 50 {
        assert!(Instant::now() < deadline, "no traffic after the upgrade");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        after_exit > before,
        "requests were served during the upgrade"
    );
    new
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_under_load_fails_no_request_and_keeps_the_port() {
    with_timeout(Duration::from_secs(90), async {
        let _heavy = heavy_test_lock().await;
        let up = Upstream::echo("echo");
        let mut cfg = ConfigBuilder::new()
            .routes(vec![route("r", "/", "c", "")])
            .cluster(cluster("c", up.addr, ""));
        cfg.top_extra = "runtime:\n  worker_threads: 2\n  drain_timeout: 5s\n".into();
        let dir = TempDir::new("hot-upgrade");
        let config = dir.join("config.yaml");
        std::fs::write(&config, cfg.yaml()).expect("config");
        let mut first = start_sidecar("first", &dir, &config, &[]);
        first.wait_ready(cfg.admin).await;
        assert!(dir.join("upgrade.sock").exists(), "{}", first.logs());

        let tally = Arc::new(Tally::default());
        let mut load = Vec::new();
        for _ in 0..4 {
            load.push(tokio::spawn(keep_alive_load(
                cfg.listen,
                tally.clone(),
                Duration::from_millis(2),
            )));
        }
        for _ in 0..2 {
            load.push(tokio::spawn(new_connection_load(cfg.listen, tally.clone())));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(tally.ok.load(Ordering::Relaxed) > 0, "{}", first.logs());

        let mut second = upgrade("second", &mut first, &dir, &config, &tally).await;
        // The new process serves the next upgrade on the same path.
        let third = upgrade("third", &mut second, &dir, &config, &tally).await;

        tally.stop.store(true, Ordering::Relaxed);
        for task in load {
            task.await.expect("load task");
        }
        let failures = tally.failures();
        let ok = tally.ok.load(Ordering::Relaxed);
        let connects = tally.keep_alive_connects.load(Ordering::Relaxed);
        eprintln!(
            "hot upgrade x2: {ok} requests answered, {} failed, {connects} keep-alive \
             connections opened by 4 clients",
            failures.len()
        );
        assert!(
            failures.is_empty(),
            "failed requests: {failures:#?}\n{}",
            third.logs()
        );
        assert_eq!(
            connects, 4,
            "keep-alive clients had to connect again: their connections were closed"
        );

        // The same port, served by the last process.
        let r = client::request(cfg.listen, Method::GET, "/", &[], Bytes::new())
            .await
            .expect("request after the upgrades");
        assert_eq!(r.status, StatusCode::OK);
        let r = client::request(cfg.admin, Method::GET, "/ready", &[], Bytes::new())
            .await
            .expect("admin after the upgrades");
        assert_eq!(
            r.status,
            StatusCode::OK,
            "the admin listener was handed over"
        );
        drop(third);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_head_at_the_hand_off_is_answered_by_the_new_process() {
    with_timeout(Duration::from_secs(60), async {
        let _heavy = heavy_test_lock().await;
        let up = Upstream::echo("echo");
        let mut cfg = ConfigBuilder::new()
            .routes(vec![route("r", "/", "c", "")])
            .cluster(cluster("c", up.addr, ""));
        cfg.top_extra = "runtime:\n  worker_threads: 2\n  drain_timeout: 5s\n".into();
        let dir = TempDir::new("hot-upgrade-half");
        let config = dir.join("config.yaml");
        std::fs::write(&config, cfg.yaml()).expect("config");
        let mut first = start_sidecar("first", &dir, &config, &[]);
        first.wait_ready(cfg.admin).await;

        // A keep-alive connection that was served once, then sends half a head.
        let mut half = TcpStream::connect(cfg.listen).await.expect("connect");
        match exchange(&mut half, false).await {
            Exchange::Answer(200, false) => {}
            _ => panic!("first request\n{}", first.logs()),
        }
        half.write_all(b"GET /hot HTTP/1.1\r\nhost: x\r\nx-half: ")
            .await
            .expect("half a head");
        // A connection that has sent nothing yet.
        let mut silent = TcpStream::connect(cfg.listen).await.expect("connect");
        let ports = (
            half.local_addr().expect("addr"),
            silent.local_addr().expect("addr"),
        );
        tokio::time::sleep(Duration::from_millis(300)).await;

        let second = start_sidecar(
            "second",
            &dir,
            &config,
            &["--upgrade", "--upgrade-window", "300ms"],
        );
        let status = first.wait_exit(Duration::from_secs(20)).await;
        assert!(status.success(), "{}", first.logs());
        assert_eq!(handed_connections(&first.logs()), 2, "{}", first.logs());
        // Only the new process is left: it answers, on the same sockets.
        half.write_all(b"yes\r\n\r\n")
            .await
            .expect("rest of the head");
        match read_answer(&mut half).await {
            Exchange::Answer(200, false) => {}
            _ => panic!("the half head got no answer\n{}", second.logs()),
        }
        match exchange(&mut silent, false).await {
            Exchange::Answer(200, false) => {}
            _ => panic!("the silent connection got no answer\n{}", second.logs()),
        }
        assert_eq!(
            (
                half.local_addr().expect("addr"),
                silent.local_addr().expect("addr")
            ),
            ports
        );
        // And they stay served.
        for s in [&mut half, &mut silent] {
            match exchange(s, false).await {
                Exchange::Answer(200, false) => {}
                _ => panic!("a later request failed\n{}", second.logs()),
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !second
            .logs()
            .contains("adopted the old process's idle connections connections=2")
        {
            assert!(Instant::now() < deadline, "{}", second.logs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// The sum of the series of `name` on `admin`'s Prometheus page whose labels include
/// route `r` and `labels`.
async fn route_metric(admin: std::net::SocketAddr, name: &str, labels: &[&str]) -> f64 {
    let r = client::request(admin, Method::GET, "/stats/prometheus", &[], Bytes::new())
        .await
        .expect("metrics");
    assert_eq!(r.status, StatusCode::OK);
    let series = format!("{name}{{");
    let mut needles = vec![series.as_str(), "route=\"r\""];
    needles.extend_from_slice(labels);
    metric_sum(&String::from_utf8_lossy(&r.body), &needles)
}

/// `count` requests on `listen`, each on a new connection, all answered 200.
async fn requests(listen: std::net::SocketAddr, count: usize, logs: impl Fn() -> String) {
    for _ in 0..count {
        let r = client::request(listen, Method::GET, "/", &[], Bytes::new())
            .await
            .expect("request");
        assert_eq!(r.status, StatusCode::OK, "{}", logs());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_and_latency_histograms_go_on_in_the_new_process() {
    with_timeout(Duration::from_secs(60), async {
        let _heavy = heavy_test_lock().await;
        let up = Upstream::echo("echo");
        let mut cfg = ConfigBuilder::new()
            .routes(vec![route("r", "/", "c", "")])
            .cluster(cluster("c", up.addr, ""));
        cfg.top_extra = "runtime:\n  worker_threads: 2\n  drain_timeout: 5s\n".into();
        let dir = TempDir::new("hot-upgrade-metrics");
        let config = dir.join("config.yaml");
        std::fs::write(&config, cfg.yaml()).expect("config");
        let mut first = start_sidecar("first", &dir, &config, &[]);
        first.wait_ready(cfg.admin).await;

        const OLD: usize = 12;
        const NEW: usize = 7;
        requests(cfg.listen, OLD, || first.logs()).await;
        let h = "proxy_route_request_duration_seconds";
        let (count, sum, total) = (
            format!("{h}_count"),
            format!("{h}_sum"),
            "proxy_route_requests_total",
        );
        let (bucket, inf) = (format!("{h}_bucket"), ["le=\"+Inf\""]);
        let old = (
            route_metric(cfg.admin, &count, &[]).await,
            route_metric(cfg.admin, &bucket, &inf).await,
            route_metric(cfg.admin, &bucket, &["le=\"10\""]).await,
            route_metric(cfg.admin, &sum, &[]).await,
            route_metric(cfg.admin, total, &[]).await,
        );
        assert_eq!(old.0, OLD as f64, "{}", first.logs());
        assert_eq!((old.1, old.4), (old.0, old.0));
        assert!(old.3 > 0.0, "the old process's sum is {}", old.3);

        let second = start_sidecar("second", &dir, &config, &["--upgrade"]);
        let status = first.wait_exit(Duration::from_secs(20)).await;
        assert!(status.success(), "{}", first.logs());
        // The old process's final values came in (before its `end`).
        let deadline = Instant::now() + Duration::from_secs(5);
        while route_metric(cfg.admin, &count, &[]).await < old.0 {
            assert!(
                Instant::now() < deadline,
                "no carried count\n{}",
                second.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        requests(cfg.listen, NEW, || second.logs()).await;

        // Old values plus the new process's requests: no restart from zero.
        let now = NEW as f64;
        assert_eq!(route_metric(cfg.admin, &count, &[]).await, old.0 + now);
        assert_eq!(route_metric(cfg.admin, &bucket, &inf).await, old.1 + now);
        assert_eq!(
            route_metric(cfg.admin, &bucket, &["le=\"10\""]).await,
            old.2 + now
        );
        assert_eq!(route_metric(cfg.admin, total, &[]).await, old.4 + now);
        let sum_now = route_metric(cfg.admin, &sum, &[]).await;
        assert!(sum_now > old.3, "the sum went from {} to {sum_now}", old.3);
        drop(second);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_with_no_process_to_take_over_from_fails_and_binds_nothing() {
    with_timeout(Duration::from_secs(30), async {
        let up = Upstream::echo("echo");
        let cfg = ConfigBuilder::new()
            .routes(vec![route("r", "/", "c", "")])
            .cluster(cluster("c", up.addr, ""));
        let dir = TempDir::new("hot-upgrade-none");
        let config = dir.join("config.yaml");
        std::fs::write(&config, cfg.yaml()).expect("config");
        let socket = dir.join("nobody.sock");
        let out = run_sidecar(
            &[
                "--config".as_ref(),
                config.as_os_str(),
                "--upgrade-socket".as_ref(),
                socket.as_os_str(),
                "--upgrade".as_ref(),
            ],
            Duration::from_secs(20),
        )
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains("taking over from the process at"),
            "{stderr}"
        );
        assert!(
            std::net::TcpListener::bind(cfg.listen).is_ok(),
            "the listener address was never bound"
        );
    })
    .await;
}
