//! Protective limits of a listener (`limits:`) for HTTP/1.1: the request head timeout
//! (slowloris), head size and field count, the connection cap, the idle keep-alive
//! timeout. HTTP/2's are in `limits_h2.rs`.

use crate::common;

use std::{
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::*;
use http::{Method, StatusCode};
use proxy_test_support::{
    client::{self, raw},
    eventually_async, with_timeout,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const LIMIT: Duration = Duration::from_secs(60);

/// Reads until the peer closes (EOF or reset) or `limit` passes; returns the bytes and
/// when the connection ended (`None`: still open at `limit`).
async fn read_to_close(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, Option<Instant>) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (out, None),
            Ok(Ok(0)) | Ok(Err(_)) => return (out, Some(Instant::now())),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// `GET path` on a fresh connection with `Connection: close`, answer read whole.
async fn get_close(addr: std::net::SocketAddr, path: &str) -> raw::RawResponse {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        raw::read_response(&mut s, &mut buf),
    )
    .await
    .expect("response within 10 s")
    .expect("response")
}

fn status_line(out: &[u8]) -> String {
    String::from_utf8_lossy(out)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_gets_408_within_header_read_timeout() {
    with_timeout(LIMIT, async {
        let (sc, _up, cfg) = limits_sidecar("header_read_timeout: 1s").await;
        let s = TcpStream::connect(cfg.listen).await.expect("connect");
        s.set_nodelay(true).expect("nodelay");
        let (mut r, mut w) = s.into_split();
        let started = Instant::now();
        w.write_all(b"GET /slow HTTP/1.1\r\nHost: slow\r\nX-Slow: ")
            .await
            .expect("write partial head");
        // One more byte of the never-ending header every 200 ms.
        let sent = Arc::new(AtomicU32::new(0));
        let sent_w = sent.clone();
        let trickle = tokio::spawn(async move {
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if w.write_all(b"a").await.is_err() {
                    break;
                }
                sent_w.fetch_add(1, Ordering::Relaxed);
            }
        });
        let reader = tokio::spawn(async move {
            let mut out = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match tokio::time::timeout(Duration::from_secs(10), r.read(&mut buf)).await {
                    Err(_) => return (out, None),
                    Ok(Ok(0)) | Ok(Err(_)) => return (out, Some(Instant::now())),
                    Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
                }
            }
        });

        // Meanwhile, other clients are served.
        for i in 0..3 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let r = client::request(
                cfg.listen,
                Method::GET,
                &format!("/other/{i}"),
                &[],
                Bytes::new(),
            )
            .await
            .expect("another client during the slowloris");
            assert_eq!(r.status, StatusCode::OK, "other client {i}: {}", r.text());
        }

        let (out, closed) = reader.await.expect("reader task");
        trickle.abort();
        let sent = sent.load(Ordering::Relaxed);
        let text = String::from_utf8_lossy(&out).into_owned();
        let closed = closed.unwrap_or_else(|| {
            panic!(
                "slowloris connection still open 10 s later; got {text:?}\n{}",
                sc.logs()
            )
        });
        let took = closed - started;
        assert!(
            text.starts_with("HTTP/1.1 408"),
            "408 for an unfinished head, got {text:?}"
        );
        assert!(
            text.to_ascii_lowercase()
                .contains("x-proxy-error: request_timeout"),
            "x-proxy-error: request_timeout in {text:?}"
        );
        assert!(
            took >= Duration::from_millis(900),
            "closed before the 1 s header timeout: {took:?}"
        );
        assert!(
            took <= Duration::from_millis(2500),
            "closed {took:?} after the first byte; header_read_timeout is 1 s"
        );
        assert!(
            sent >= 3,
            "the client kept trickling while waiting ({sent} bytes sent)"
        );
        // Still serving.
        let r = get_close(cfg.listen, "/after").await;
        assert_eq!(r.status, 200);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_get_431_and_the_proxy_keeps_serving() {
    with_timeout(LIMIT, async {
        let (_sc, _up, cfg) = limits_sidecar("max_header_bytes: 4096, max_headers: 10").await;
        let idle = Duration::from_secs(5);

        // A head of exactly max_header_bytes passes; one byte more does not.
        let head_of = |len: usize| {
            let start = "GET /size HTTP/1.1\r\nHost: test\r\nConnection: close\r\nX-Pad: ";
            let end = "\r\n\r\n";
            format!("{start}{}{end}", "p".repeat(len - start.len() - end.len()))
        };
        let exact = head_of(4096);
        assert_eq!(exact.len(), 4096);
        let out = raw::exchange(cfg.listen, exact.as_bytes(), idle).await;
        assert!(
            status_line(&out).starts_with("HTTP/1.1 200"),
            "a 4096-byte head with max_header_bytes 4096: {:?}",
            status_line(&out)
        );
        let out = raw::exchange(cfg.listen, head_of(4097).as_bytes(), idle).await;
        assert!(
            status_line(&out).starts_with("HTTP/1.1 431"),
            "a 4097-byte head: {:?}",
            status_line(&out)
        );
        // Far over the limit.
        let big = format!(
            "GET /big HTTP/1.1\r\nHost: test\r\nX-Big: {}\r\n\r\n",
            "b".repeat(16 * 1024)
        );
        let out = raw::exchange(cfg.listen, big.as_bytes(), idle).await;
        assert!(
            status_line(&out).starts_with("HTTP/1.1 431"),
            "a 16 KiB header: {:?}",
            status_line(&out)
        );

        // Exactly max_headers fields pass; one more does not.
        let fields = |n: usize| {
            let mut h = String::from("GET /fields HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
            for i in 2..n {
                h.push_str(&format!("X-F{i}: v\r\n"));
            }
            h.push_str("\r\n");
            h
        };
        let out = raw::exchange(cfg.listen, fields(10).as_bytes(), idle).await;
        assert!(
            status_line(&out).starts_with("HTTP/1.1 200"),
            "10 header fields with max_headers 10: {:?}",
            status_line(&out)
        );
        let out = raw::exchange(cfg.listen, fields(11).as_bytes(), idle).await;
        assert!(
            status_line(&out).starts_with("HTTP/1.1 431"),
            "11 header fields with max_headers 10: {:?}",
            status_line(&out)
        );
        let out = raw::exchange(cfg.listen, fields(50).as_bytes(), idle).await;
        assert!(
            status_line(&out).starts_with("HTTP/1.1 431"),
            "50 header fields: {:?}",
            status_line(&out)
        );

        // The proxy keeps serving.
        let r = client::request(cfg.listen, Method::GET, "/ok", &[], Bytes::new())
            .await
            .expect("request after the 431s");
        assert_eq!(r.status, StatusCode::OK);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_refuses_the_third() {
    with_timeout(LIMIT, async {
        let (sc, _up, cfg) = limits_sidecar("max_connections: 2").await;
        let mut a = TcpStream::connect(cfg.listen).await.expect("connect a");
        let mut b = TcpStream::connect(cfg.listen).await.expect("connect b");
        let (mut abuf, mut bbuf) = (Vec::new(), Vec::new());
        assert_eq!(
            raw::keep_alive_get(&mut a, &mut abuf, "/a")
                .await
                .expect("a")
                .status,
            200
        );
        assert_eq!(
            raw::keep_alive_get(&mut b, &mut bbuf, "/b")
                .await
                .expect("b")
                .status,
            200
        );

        // The third: accepted by the kernel, closed by the proxy without an answer.
        let mut c = TcpStream::connect(cfg.listen).await.expect("connect c");
        let _ = c.write_all(b"GET /c HTTP/1.1\r\nHost: test\r\n\r\n").await;
        let (out, closed) = read_to_close(&mut c, Duration::from_secs(5)).await;
        assert!(
            closed.is_some(),
            "a third connection over max_connections 2 is closed (still open after 5 s)"
        );
        assert!(
            out.is_empty(),
            "closed without an answer, got {:?}",
            String::from_utf8_lossy(&out)
        );
        let m = sc.metrics().await;
        let rejected = metric_sum(
            &m,
            &[
                "proxy_listener_connections_rejected_total{",
                "listener=\"main\"",
            ],
        );
        assert!(rejected >= 1.0, "rejection counted:\n{m}");

        // The two admitted connections still work.
        assert_eq!(
            raw::keep_alive_get(&mut a, &mut abuf, "/a2")
                .await
                .expect("a2")
                .status,
            200
        );

        // After one closes, a new connection is served.
        drop(b);
        let back_to_one = eventually_async(Duration::from_secs(5), || async {
            let m = sc.metrics().await;
            metric_sum(
                &m,
                &["proxy_listener_connections_active{", "listener=\"main\""],
            ) == 1.0
        })
        .await;
        assert!(
            back_to_one,
            "not within 5s: listener active connections back to 1"
        );
        let mut d = TcpStream::connect(cfg.listen).await.expect("connect d");
        let mut dbuf = Vec::new();
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            raw::keep_alive_get(&mut d, &mut dbuf, "/d"),
        )
        .await
        .expect("answer on a new connection within 5 s")
        .expect("d");
        assert_eq!(r.status, 200);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connection_is_closed() {
    with_timeout(LIMIT, async {
        let (_sc, _up, cfg) = limits_sidecar("idle_timeout: 1s").await;
        let mut s = TcpStream::connect(cfg.listen).await.expect("connect");
        let mut buf = Vec::new();

        // A connection in use stays open past the idle timeout.
        let busy_since = Instant::now();
        let mut n = 0;
        while busy_since.elapsed() < Duration::from_millis(2500) {
            let r = raw::keep_alive_get(&mut s, &mut buf, &format!("/busy/{n}"))
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "busy keep-alive connection failed after {:?} ({n} requests): {e}",
                        busy_since.elapsed()
                    )
                });
            assert_eq!(r.status, 200);
            n += 1;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }

        // Once idle, it is closed between one and two idle timeouts later.
        let idle_since = Instant::now();
        let (out, closed) = read_to_close(&mut s, Duration::from_secs(10)).await;
        assert!(
            out.is_empty(),
            "nothing sent on an idle connection: {:?}",
            String::from_utf8_lossy(&out)
        );
        let closed = closed.expect("idle connection closed within 10 s");
        let idle = closed - idle_since;
        assert!(
            idle >= Duration::from_millis(900),
            "closed after only {idle:?} idle (idle_timeout 1s)"
        );
        assert!(
            idle <= Duration::from_millis(3000),
            "closed after {idle:?} idle; at most 2 x idle_timeout (1s) plus slack"
        );
    })
    .await;
}
