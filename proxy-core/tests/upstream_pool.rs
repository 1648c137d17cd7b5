//! Idle upstream connections under the real server with two workers: the surplus
//! left by a burst expires (the server's sweep, every 5 s) while a steady trickle of
//! sequential requests goes on, and the connection the trickle uses stays open. A
//! connection the upstream closed while it was idle is not used again.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::join_all;
use http::Method;
use proxy_core::Registry;
use proxy_test_support::{
    client, server::TestServer, timeout::with_timeout, upstream::Upstream, yaml,
};

const LIMIT: Duration = Duration::from_secs(90);

/// The endpoint's `(open_connections, idle_connections)` from `/clusters`.
async fn connections(server: &TestServer) -> (u64, u64) {
    let (status, text) = server.admin_get("/clusters").await;
    assert_eq!(status, 200, "{text}");
    let j: serde_json::Value = serde_json::from_str(&text).expect("/clusters is JSON");
    let e = &j["clusters"][0]["endpoints"][0];
    let count = |k: &str| e[k].as_u64().unwrap_or_else(|| panic!("{k} in {j:#}"));
    (count("open_connections"), count("idle_connections"))
}

/// One request of the trickle, then a pause.
async fn step(trickle: &mut client::H1Client) {
    let r = trickle
        .request(Method::GET, "/", &[], Bytes::new())
        .await
        .expect("trickle response");
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_surplus_of_idle_connections_expires_under_a_steady_trickle() {
    with_timeout(LIMIT, async {
        let up = Upstream::echo("a");
        let cfg = yaml::config(
            &[yaml::listener("web", "app", &[])],
            &[yaml::cluster(
                "app",
                &[up.addr],
                &["pool: { max_idle: 16, idle_timeout: 1s }"],
            )],
        )
        .replace("worker_threads: 1", "worker_threads: 2");
        let admin = proxy_test_support::ports::free_addr();
        let cfg = format!("admin: {{ address: {admin} }}\n{cfg}");
        let server = TestServer::start(&cfg, Registry::default());
        let addr = server.addr("web");

        // A burst: four concurrent slow requests, four upstream connections.
        let slow = [("x-echo-delay-ms", "300")];
        let burst = (0..4).map(|_| client::request(addr, Method::GET, "/", &slow, Bytes::new()));
        for r in join_all(burst).await {
            assert_eq!(r.expect("burst response").status, 200);
        }
        assert_eq!(up.connections(), 4);
        assert_eq!(connections(&server).await, (4, 4));

        // A steady trickle on one downstream connection (so on one worker) reuses one
        // upstream connection; the others are closed within two sweeps.
        let mut trickle = client::H1Client::new(addr);
        let start = Instant::now();
        loop {
            step(&mut trickle).await;
            if connections(&server).await == (1, 1) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(40),
                "the surplus was not closed: {:?}",
                connections(&server).await
            );
        }
        // The trickle's connection outlives more than a sweep: no new connection.
        let opened = up.connections();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(7) {
            step(&mut trickle).await;
        }
        assert_eq!(up.connections(), opened);
        assert_eq!(connections(&server).await, (1, 1));
    })
    .await;
}

/// An upstream that answers each connection's one request with a keep-alive answer
/// (no `Connection: close`) and then closes it, as an upstream whose keep-alive
/// timeout is shorter than the proxy's does.
fn answers_once_then_closes() -> Upstream {
    proxy_test_support::upstream::spawn_raw(|mut stream, _| async move {
        use tokio::io::AsyncWriteExt;
        if proxy_test_support::upstream::read_request(&mut stream)
            .await
            .is_none()
        {
            return;
        }
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await;
        let _ = stream.shutdown().await;
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_upstream_closed_while_idle_is_not_used_again() {
    with_timeout(LIMIT, async {
        let up = answers_once_then_closes();
        let cfg = yaml::config(
            &[yaml::listener("web", "app", &[])],
            &[yaml::cluster("app", &[up.addr], &[])],
        );
        let server = TestServer::start(&cfg, Registry::default());
        let addr = server.addr("web");
        let first = client::request(addr, Method::GET, "/", &[], Bytes::new())
            .await
            .expect("first response");
        assert_eq!(first.status, 200);
        // The upstream's FIN reaches the proxy while its connection is idle.
        tokio::time::sleep(Duration::from_millis(200)).await;
        // A streamed body cannot be sent twice: had the closed connection been
        // taken, this would fail with a 502 rather than be retried.
        let answer = client::raw::exchange(
            addr,
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            Duration::from_millis(500),
        )
        .await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert_eq!(up.connections(), 2, "one connection per request");
    })
    .await;
}
