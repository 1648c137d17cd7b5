use std::{
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use super::*;
use crate::worker;

/// Runs `f(worker)` on one thread per worker index in `workers`, each marked as that
/// worker, and waits for all of them.
fn on_workers(workers: &[usize], f: impl Fn(usize) + Sync) {
    std::thread::scope(|s| {
        for &w in workers {
            let f = &f;
            s.spawn(move || {
                worker::set_index(w);
                f(w);
            });
        }
    });
}

#[test]
fn histogram_buckets_are_cumulative() {
    let h = Histogram::default();
    h.observe(Duration::from_micros(100));
    h.observe(Duration::from_millis(3));
    h.observe(Duration::from_secs(60));
    let mut out = String::new();
    h.totals().render(&mut out, "x", "a=\"b\"");
    assert!(out.contains("x_bucket{a=\"b\",le=\"0.0005\"} 1"));
    assert!(out.contains("x_bucket{a=\"b\",le=\"0.005\"} 2"));
    assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 3"));
    assert_eq!(h.count(), 3);
}

#[test]
fn status_classes_and_local_errors() {
    let s = RequestStats::default();
    s.start();
    s.finish(503, Duration::from_millis(1));
    s.local_errors.add("connect_failure");
    assert_eq!(s.status_class(5), 1);
    assert_eq!(s.status_class(0), 0);
    assert_eq!(s.status_class(6), 0);
    assert_eq!(s.local_errors.get("connect_failure"), 1);
    assert_eq!(s.active(), 0);
}

#[test]
fn each_worker_counts_in_its_own_shard_and_extra_workers_wrap() {
    let counts: PerWorker<AtomicU64> = PerWorker::with_shards(2);
    on_workers(&[0, 1, 2, 3, 5], |w| {
        counts.local().fetch_add(1 << (8 * w), Relaxed);
    });
    let shards: Vec<u64> = counts.iter().map(|c| c.load(Relaxed)).collect();
    // Workers 0 and 2 share shard 0; 1, 3 and 5 share shard 1.
    assert_eq!(shards, [1 | 1 << 16, 1 << 8 | 1 << 24 | 1 << 40]);
}

#[test]
fn request_counts_from_two_workers_are_summed_exactly() {
    const N: u64 = 10_000;
    let s = RequestStats::default();
    let c = Counter::default();
    on_workers(&[0, 1], |w| {
        for i in 0..N {
            s.start();
            c.add(1);
            if i % 10 == 0 {
                s.local_errors.add("upstream_timeout");
            }
            let status = if w == 0 { 200 } else { 404 };
            s.finish(status, Duration::from_micros(i));
        }
    });
    assert_eq!(s.requests(), 2 * N);
    assert_eq!(c.get(), 2 * N);
    assert_eq!(s.active(), 0);
    assert_eq!(s.status_class(2), N);
    assert_eq!(s.status_class(4), N);
    assert_eq!(s.local_errors.get("upstream_timeout"), 2 * N / 10);
}

#[test]
fn a_histogram_observed_from_two_workers_renders_the_summed_buckets() {
    let s = RequestStats::default();
    on_workers(&[0, 1], |w| {
        // Worker 0: 3 answers of 100µs; worker 1: 2 of 3ms and 1 of 60s.
        let latencies: &[u64] = if w == 0 {
            &[100, 100, 100]
        } else {
            &[3_000, 3_000, 60_000_000]
        };
        for &us in latencies {
            s.start();
            s.finish(200, Duration::from_micros(us));
        }
    });
    let mut out = String::new();
    render_requests(&mut out, "p", &[("r=\"a\"".to_string(), &s)]);
    for line in [
        "p_requests_total{r=\"a\"} 6",
        "p_requests_active{r=\"a\"} 0",
        "p_responses_total{r=\"a\",class=\"2xx\"} 6",
        "p_request_duration_seconds_bucket{r=\"a\",le=\"0.0005\"} 3",
        "p_request_duration_seconds_bucket{r=\"a\",le=\"0.001\"} 3",
        "p_request_duration_seconds_bucket{r=\"a\",le=\"0.005\"} 5",
        "p_request_duration_seconds_bucket{r=\"a\",le=\"10\"} 5",
        "p_request_duration_seconds_bucket{r=\"a\",le=\"+Inf\"} 6",
        "p_request_duration_seconds_count{r=\"a\"} 6",
    ] {
        assert!(out.lines().any(|l| l == line), "no {line:?} in\n{out}");
    }
    let sum = format!(
        "p_request_duration_seconds_sum{{r=\"a\"}} {}",
        60_006_300.0 / 1e6
    );
    assert!(out.lines().any(|l| l == sum), "no {sum:?} in\n{out}");

    let h = Histogram::default();
    on_workers(&[0, 1], |_| h.observe(Duration::from_millis(1)));
    assert_eq!(h.count(), 2);
}

#[test]
fn in_flight_gauges_follow_requests_that_change_worker() {
    for s in [RequestStats::default(), RequestStats::with_shared_gauge()] {
        on_workers(&[0], |_| {
            s.start();
            s.start();
        });
        assert_eq!(s.active(), 2);
        on_workers(&[1], |_| s.finish(200, Duration::ZERO));
        assert_eq!(s.active(), 1);
        on_workers(&[1], |_| drop(InFlight::adopt(&s)));
        assert_eq!(s.active(), 0);
    }
    // Ends seen before their starts (a read racing a request that moved) read as 0.
    let s = RequestStats::default();
    on_workers(&[1], |_| s.abandon());
    assert_eq!(s.active(), 0);
}

#[test]
fn absorb_carries_the_summed_counts() {
    let old = RequestStats::default();
    on_workers(&[0, 1], |_| {
        old.start();
        old.local_errors.add("no_route");
        old.finish(502, Duration::from_millis(2));
    });
    let new = RequestStats::default();
    new.absorb(&old);
    assert_eq!(new.requests(), 2);
    assert_eq!(new.status_class(5), 2);
    assert_eq!(new.local_errors.get("no_route"), 2);
    let mut out = String::new();
    render_requests(&mut out, "p", &[("r=\"a\"".to_string(), &new)]);
    assert!(out.contains("p_request_duration_seconds_count{r=\"a\"} 2\n"));
}

#[test]
fn connection_counts_from_two_workers_are_summed_exactly() {
    let s = ConnStats::default();
    on_workers(&[0, 1], |w| {
        for _ in 0..1000 {
            s.open();
            s.count_rx(3);
            s.count_tx(5);
            s.close();
        }
        s.reject();
        if w == 1 {
            s.count_tx(7);
        }
    });
    s.open();
    assert_eq!(s.opened(), 2001);
    assert_eq!(s.active(), 1);
    assert_eq!(s.rx_bytes(), 6000);
    assert_eq!(s.tx_bytes(), 10_007);
    assert_eq!(s.rejected(), 2);
    let mut out = String::new();
    render_conns(&mut out, "p", &[("l=\"a\"".to_string(), &s)]);
    for line in [
        "p_connections_total{l=\"a\"} 2001",
        "p_connections_active{l=\"a\"} 1",
        "p_connections_rejected_total{l=\"a\"} 2",
        "p_rx_bytes_total{l=\"a\"} 6000",
        "p_tx_bytes_total{l=\"a\"} 10007",
    ] {
        assert!(out.lines().any(|l| l == line), "no {line:?} in\n{out}");
    }
}

/// A server with two `per_core` workers: the requests of many connections, spread
/// over both workers by the kernel, count once each in every level's stats, in the
/// shards of both workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_worker_server_counts_every_request_once() {
    use proxy_test_support::{client, eventually, upstream::Upstream, with_timeout, yaml};

    const REQUESTS: u64 = 40;
    let up = Upstream::named("up");
    let doc = yaml::config(
        &[yaml::listener("web", "app", &[])],
        &[yaml::cluster("app", &[up.addr], &[])],
    )
    .replace("worker_threads: 1", "worker_threads: 2");
    let config = crate::config::Config::from_yaml(&doc).expect("config");
    let server = crate::Server::new(config, crate::Registry::default()).expect("server");
    let runner = server.clone();
    let thread = std::thread::spawn(move || runner.run_until(std::future::pending()));
    let addr: std::net::SocketAddr = loop {
        if let Some((_, a)) = server.listener_addresses().pop() {
            break a.parse().expect("a TCP address");
        }
        std::thread::sleep(Duration::from_millis(10));
    };

    with_timeout(Duration::from_secs(30), async {
        // One connection per request: the kernel spreads them over both workers.
        let answers = (0..REQUESTS).map(|_| client::get(addr, "/", &[]));
        for r in futures_util::future::join_all(answers).await {
            assert_eq!(r.status, 200);
        }
        let snapshot = server.snapshot();
        let listener = &snapshot.listeners[0].routing;
        let route = listener.routes.routes().next().expect("a route");
        let cluster = &snapshot.clusters["app"];
        let endpoint = &cluster.endpoints[0];
        let levels = [
            &*listener.stats,
            &*route.stats,
            &*cluster.stats,
            &endpoint.stats,
        ];
        let idle = eventually(Duration::from_secs(5), || {
            levels.iter().all(|s| s.active() == 0)
        });
        assert!(idle.await, "requests left in flight");
        for s in levels {
            assert_eq!(s.requests(), REQUESTS);
            assert_eq!(s.status_class(2), REQUESTS);
            let shards = s.requests_per_shard();
            assert_eq!(shards.len(), 2, "one shard per worker");
            assert!(
                shards.iter().all(|&n| n > 0),
                "both workers count: {shards:?}"
            );
        }
        let conns = snapshot.listener_conn_stats("web").expect("listener stats");
        assert_eq!(conns.opened(), REQUESTS);
    })
    .await;
    server.shutdown();
    assert!(thread.join().is_ok_and(|r| r.is_ok()));
}
