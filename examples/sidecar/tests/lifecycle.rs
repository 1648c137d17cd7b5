//! Process lifecycle: SIGTERM drains in-flight requests and exits 0; `sidecar` with no
//! arguments runs its embedded default (the one-request smoke test of the example).

use crate::common;

use std::{
    net::{SocketAddr, TcpListener},
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::*;
use http::{Method, StatusCode};
use proxy_test_support::{client, tools, with_timeout, Upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_0() {
    with_timeout(Duration::from_secs(40), async {
        let up = Upstream::echo("echo");
        let mut cfg = ConfigBuilder::new()
            .routes(vec![route("r", "/", "c", "")])
            .cluster(cluster("c", up.addr, ""));
        cfg.top_extra = "runtime:\n  drain_timeout: 10s\n".into();
        let mut sc = Sidecar::start_with(&mut cfg).await;

        let listen = cfg.listen;
        let in_flight = tokio::spawn(async move {
            client::request(
                listen,
                Method::GET,
                "/slow",
                &[("x-echo-delay-ms", "1000")],
                Bytes::new(),
            )
            .await
        });
        // Let the request reach the upstream, then ask the sidecar to stop.
        let deadline = Instant::now() + Duration::from_secs(5);
        while up.hits() == 0 {
            assert!(
                Instant::now() < deadline,
                "the slow request never reached the upstream"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let term_at = Instant::now();
        sc.signal("TERM");

        let r = in_flight
            .await
            .expect("task")
            .expect("the in-flight request completes during the drain");
        assert_eq!(
            r.status,
            StatusCode::OK,
            "in-flight request answered: {}",
            r.text()
        );
        let status = sc
            .wait_exit(Duration::from_secs(15))
            .await
            .expect("sidecar exits after the drain");
        assert!(status.success(), "exit status after SIGTERM: {status}");
        assert!(
            term_at.elapsed() < Duration::from_secs(12),
            "drain bounded by drain_timeout: {:?}",
            term_at.elapsed()
        );
        assert!(
            std::net::TcpStream::connect_timeout(&listen, Duration::from_secs(1)).is_err(),
            "the listener is closed after exit"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_when_idle_exits_promptly() {
    with_timeout(Duration::from_secs(30), async {
        let up = Upstream::echo("echo");
        let mut cfg = ConfigBuilder::new()
            .routes(vec![route("r", "/", "c", "")])
            .cluster(cluster("c", up.addr, ""));
        let mut sc = Sidecar::start_with(&mut cfg).await;
        // An idle keep-alive connection must not hold the drain for drain_timeout.
        let mut c = client::H1Client::new(cfg.listen);
        let r = c
            .request(Method::GET, "/", &[], Bytes::new())
            .await
            .expect("request");
        assert_eq!(r.status, StatusCode::OK);
        let started = Instant::now();
        sc.signal("TERM");
        let status = sc
            .wait_exit(Duration::from_secs(15))
            .await
            .expect("sidecar exits on SIGTERM");
        assert!(status.success(), "exit status after SIGTERM: {status}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "idle drain took {:?}",
            started.elapsed()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_args_runs_the_embedded_default() {
    if !tools::installed("curl") {
        return;
    }
    let admin: SocketAddr = "127.0.0.1:15000".parse().expect("addr");
    let outbound: SocketAddr = "127.0.0.1:15001".parse().expect("addr");
    // The default uses fixed ports: skip when something else holds them.
    let free = |a: SocketAddr| TcpListener::bind(a).is_ok();
    if !free(admin) || !free(outbound) {
        eprintln!("SKIPPED: 127.0.0.1:15000 or :15001 in use; cannot run the embedded default");
        return;
    }
    with_timeout(Duration::from_secs(30), async {
        let mut sc = Sidecar::start_default(admin).await;
        let r = curl(&["http://127.0.0.1:15001/"], Duration::from_secs(10)).await;
        assert_eq!(r.exit_code, 0, "{}", r.stderr);
        assert_eq!(
            r.status,
            200,
            "the default route reaches the demo upstream: {}",
            r.text()
        );
        sc.signal("TERM");
        let status = sc
            .wait_exit(Duration::from_secs(15))
            .await
            .expect("exits on SIGTERM");
        assert!(status.success(), "{status}");
    })
    .await;
}
