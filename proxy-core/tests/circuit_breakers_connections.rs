//! The connection circuit breakers on real sockets: a cluster's `max_connections`
//! caps the upstream connections (counted where the upstream accepts them), requests
//! over it wait for a connection, `max_pending_requests` bounds the waiting ones
//! (503 overflow at once past it), a waiting request ends with the route timeout or
//! the connect timeout, the cap holds across workers and for HTTP/2.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use proxy_core::Registry;
use proxy_test_support::{
    client, eventually::eventually, ports::free_addr, prometheus::sample, server::TestServer,
    timeout::with_timeout, upstream::response, upstream::spawn_raw, Upstream,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::Semaphore,
};

/// A config with an admin listener, `workers` workers, a listener whose `/slow`
/// route has no timeout and whose other paths time out after `route_timeout`, and
/// cluster `app` of `up` with `cluster_extra` keys.
fn doc(
    workers: usize,
    route_timeout: &str,
    up: std::net::SocketAddr,
    cluster_extra: &str,
) -> String {
    let admin = free_addr();
    format!(
        r#"admin: {{ address: {admin} }}
runtime: {{ worker_threads: {workers} }}
listeners:
  - name: web
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - name: slow
            match: {{ path: {{ prefix: "/slow" }} }}
            cluster: app
          - name: rest
            match: {{ path: {{ prefix: "/" }} }}
            cluster: app
            timeout: {route_timeout}
clusters:
  - name: app
    endpoints: ["{up}"]
{cluster_extra}"#
    )
}

/// An upstream whose requests wait for a permit of the returned semaphore.
fn gated_upstream() -> (Upstream, Arc<Semaphore>) {
    let gate = Arc::new(Semaphore::new(0));
    let held = gate.clone();
    let up = Upstream::http_async(move |_| {
        let held = held.clone();
        async move {
            let _pass = held.acquire().await;
            response(200, "slow")
        }
    });
    (up, gate)
}

/// The series `proxy_cluster_circuit_breaker_{metric}` of cluster `app` for `limit`.
async fn breaker(server: &TestServer, metric: &str, limit: &str) -> Option<f64> {
    let (_, metrics) = server.admin_get("/stats/prometheus").await;
    sample(
        &metrics,
        &format!("proxy_cluster_circuit_breaker_{metric}{{cluster=\"app\",limit=\"{limit}\"}}"),
    )
}

async fn pending(server: &TestServer) -> Option<f64> {
    let (_, metrics) = server.admin_get("/stats/prometheus").await;
    sample(
        &metrics,
        "proxy_cluster_circuit_breaker_pending{cluster=\"app\"}",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_max_connections_wait_for_a_connection() {
    with_timeout(Duration::from_secs(60), async {
        let (up, gate) = gated_upstream();
        let cfg = doc(
            1,
            "30s",
            up.addr,
            "    connect_timeout: 20s\n    circuit_breakers: {max_connections: 2}\n",
        );
        let server = TestServer::start(&cfg, Registry::default());
        let addr = server.addr("web");
        let all: Vec<_> = (0..10)
            .map(|i| {
                tokio::spawn(async move { client::get(addr, &format!("/slow/{i}"), &[]).await })
            })
            .collect();
        assert!(
            eventually(Duration::from_secs(10), || up.hits() == 2).await,
            "two requests reach the upstream"
        );
        let mut waiting = None;
        for _ in 0..100 {
            waiting = pending(&server).await;
            if waiting == Some(8.0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(waiting, Some(8.0), "the eight others wait");
        assert_eq!(up.connections(), 2);
        assert_eq!(
            breaker(&server, "in_use", "max_connections").await,
            Some(2.0)
        );
        assert_eq!(
            breaker(&server, "limit", "max_connections").await,
            Some(2.0)
        );
        gate.add_permits(100);
        for r in all {
            let r = r.await.expect("request task");
            assert_eq!(r.status, 200);
            assert_eq!(r.text(), "slow");
        }
        assert_eq!(up.hits(), 10);
        assert_eq!(up.connections(), 2, "the waiting requests reused the two");
        assert_eq!(pending(&server).await, Some(0.0));
        assert_eq!(
            breaker(&server, "overflow_total", "max_connections").await,
            Some(8.0),
            "eight requests found the cap reached"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_max_pending_requests_fail_at_once() {
    with_timeout(Duration::from_secs(60), async {
        let (up, gate) = gated_upstream();
        let cfg = doc(
            1,
            "30s",
            up.addr,
            "    connect_timeout: 20s\n    circuit_breakers: {max_connections: 2, max_pending_requests: 3}\n",
        );
        let server = TestServer::start(&cfg, Registry::default());
        let addr = server.addr("web");
        let get = |i: usize| tokio::spawn(async move { client::get(addr, &format!("/slow/{i}"), &[]).await });
        let mut served: Vec<_> = (0..2).map(get).collect();
        assert!(eventually(Duration::from_secs(10), || up.hits() == 2).await);
        served.extend((2..5).map(get));
        let mut waiting = None;
        for _ in 0..100 {
            waiting = breaker(&server, "in_use", "max_pending_requests").await;
            if waiting == Some(3.0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(waiting, Some(3.0), "three requests wait");
        let started = Instant::now();
        let over: Vec<_> = (5..10).map(get).collect();
        for r in over {
            let r = r.await.expect("request task");
            assert_eq!(r.status, 503);
            assert_eq!(r.header("x-proxy-error"), Some("overflow"));
            assert_eq!(r.header("x-proxy-error-detail"), Some("max_pending_requests"));
        }
        assert!(started.elapsed() < Duration::from_secs(5), "refused at once");
        assert_eq!(
            breaker(&server, "overflow_total", "max_pending_requests").await,
            Some(5.0)
        );
        assert_eq!(breaker(&server, "limit", "max_pending_requests").await, Some(3.0));
        gate.add_permits(100);
        for r in served {
            let r = r.await.expect("request task");
            assert_eq!(r.status, 200);
        }
        assert_eq!(up.hits(), 5);
        assert_eq!(up.connections(), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_request_ends_with_the_route_timeout_or_the_connect_timeout() {
    with_timeout(Duration::from_secs(60), async {
        let (up, gate) = gated_upstream();
        // The route's timeout comes first: 504, as for any request past it.
        let cfg = doc(
            1,
            "300ms",
            up.addr,
            "    connect_timeout: 20s\n    circuit_breakers: {max_connections: 1}\n",
        );
        let server = TestServer::start(&cfg, Registry::default());
        let addr = server.addr("web");
        let held = tokio::spawn(async move { client::get(addr, "/slow", &[]).await });
        assert!(eventually(Duration::from_secs(10), || up.hits() == 1).await);
        let started = Instant::now();
        let r = client::get(addr, "/fast", &[]).await;
        assert_eq!(r.status, 504);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        assert_eq!(up.hits(), 1, "the request never reached the upstream");
        assert_eq!(pending(&server).await, Some(0.0), "its place came back");
        // The connect timeout comes first: 503 overflow, detail max_connections.
        server
            .reload(&doc(
                1,
                "30s",
                up.addr,
                // New limits: a new cap, the old connection's slot is not in it.
                "    connect_timeout: 300ms\n    circuit_breakers: {max_connections: 1, max_pending_requests: 10}\n",
            ))
            .expect("reload");
        let held_again = tokio::spawn(async move { client::get(addr, "/slow/again", &[]).await });
        assert!(eventually(Duration::from_secs(10), || up.hits() == 2).await);
        let r = client::get(addr, "/fast", &[]).await;
        assert_eq!(r.status, 503);
        assert_eq!(r.header("x-proxy-error"), Some("overflow"));
        assert_eq!(r.header("x-proxy-error-detail"), Some("max_connections"));
        gate.add_permits(100);
        for r in [held, held_again] {
            assert_eq!(r.await.expect("request task").status, 200);
        }
    })
    .await;
}

/// An HTTP/1.1 upstream answering each request after `delay`, counting the
/// requests in service at once (now, and the most seen).
///
/// Over HTTP/1.1 a request in service holds its connection, so this is the number of
/// connections busy at once, exactly: the cap bounds it. The connections the
/// upstream sees open are no exact measure, since it reads the end of a connection
/// the proxy closed (an idle one, to free its slot for another worker) some time
/// after the proxy has opened the next.
fn counting_upstream(delay: Duration) -> (Upstream, Arc<AtomicUsize>) {
    let busy = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (busy_c, most_c) = (busy.clone(), most.clone());
    let up = spawn_raw(move |mut stream, stats| {
        let (busy, most) = (busy_c.clone(), most_c.clone());
        async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            'conn: loop {
                // Requests without a body: a head ends the request.
                while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    buf.drain(..end + 4);
                    stats.hit();
                    let now = busy.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    let written = stream.write_all(answer).await;
                    // No await between the answer written and the count given back:
                    // the proxy cannot send the next request before it drops.
                    busy.fetch_sub(1, Ordering::SeqCst);
                    if written.is_err() {
                        break 'conn;
                    }
                }
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        }
    });
    (up, most)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cap_holds_across_workers() {
    with_timeout(Duration::from_secs(60), async {
        let (up, most) = counting_upstream(Duration::from_millis(100));
        let cfg = doc(
            2,
            "30s",
            up.addr,
            "    connect_timeout: 20s\n    circuit_breakers: {max_connections: 2}\n",
        );
        let server = TestServer::start(&cfg, Registry::default());
        let addr = server.addr("web");
        for round in 0..3 {
            // Each request on its own client connection: the two workers share them.
            let all: Vec<_> = (0..10)
                .map(|i| {
                    tokio::spawn(async move {
                        client::get(addr, &format!("/slow/{round}/{i}"), &[]).await
                    })
                })
                .collect();
            for r in all {
                let r = r.await.expect("request task");
                assert_eq!(r.status, 200);
                assert_eq!(r.text(), "ok");
            }
        }
        assert_eq!(up.hits(), 30);
        assert!(
            most.load(Ordering::SeqCst) <= 2,
            "at most two upstream connections busy at once, saw {}",
            most.load(Ordering::SeqCst)
        );
        assert_eq!(most.load(Ordering::SeqCst), 2, "the cap is used");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http2_keeps_one_connection_under_max_connections_one() {
    with_timeout(Duration::from_secs(60), async {
        let up = Upstream::http_async(|_| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            response(200, "h2")
        });
        let cfg = doc(
            2,
            "30s",
            up.addr,
            "    protocol: http2\n    connect_timeout: 20s\n    circuit_breakers: {max_connections: 1}\n",
        );
        let server = TestServer::start(&cfg, Registry::default());
        let addr = server.addr("web");
        let all: Vec<_> = (0..10)
            .map(|i| tokio::spawn(async move { client::get(addr, &format!("/slow/{i}"), &[]).await }))
            .collect();
        for r in all {
            let r = r.await.expect("request task");
            assert_eq!(r.status, 200);
            assert_eq!(r.text(), "h2");
        }
        assert_eq!(up.hits(), 10);
        assert_eq!(up.connections(), 1, "one connection carries them all");
    })
    .await;
}
