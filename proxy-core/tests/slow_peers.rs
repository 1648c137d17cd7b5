//! Slow clients cannot hold the proxy: a request body that stops arriving and a client
//! that stops reading a response both end within `limits.stream_idle_timeout`, and the
//! upstream connection involved is let go, over HTTP/1.1 and HTTP/2 alike, as it is
//! when a client closes its connection while it waits for an answer. An upstream that
//! never answers, over HTTP/1.1 or HTTP/2, and an HTTP/2 upstream whose answer stops
//! arriving are given up after the cluster's `stream_idle_timeout`; a request body
//! still going out to the upstream does not count against that wait.

// Test helpers: a failed setup should stop the test loudly.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use proxy_core::{Registry, Server};
use proxy_test_support::{upstream::spawn_raw, TestServer, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An upstream that reads a request head and its `content-length` body, then answers
/// with `size` bytes.
fn upstream(size: usize) -> Upstream {
    spawn_raw(move |mut s, _| async move {
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 65536];
        let end = loop {
            let Ok(n) = s.read(&mut chunk).await else {
                return;
            };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let want: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        let mut have = buf.len() - end;
        while have < want {
            let Ok(n) = s.read(&mut chunk).await else {
                return;
            };
            if n == 0 {
                return;
            }
            have += n;
        }
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {size}\r\n\r\n");
        if s.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let block = vec![b'x'; 65536];
        let mut left = size;
        while left > 0 {
            let n = left.min(block.len());
            if s.write_all(&block[..n]).await.is_err() {
                return;
            }
            left -= n;
        }
    })
}

fn start(upstream: std::net::SocketAddr) -> (TestServer, std::net::SocketAddr) {
    start_with(upstream, "http1")
}

/// [`start`] with the cluster speaking `protocol` to the upstream.
fn start_with(
    upstream: std::net::SocketAddr,
    protocol: &str,
) -> (TestServer, std::net::SocketAddr) {
    let yaml = format!(
        r#"
admin: {{ address: "127.0.0.1:0" }}
listeners:
  - name: l
    address: 127.0.0.1:0
    protocol: auto
    limits: {{ stream_idle_timeout: 500ms }}
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {{ path: {{ prefix: "/" }} }}
            cluster: up
clusters:
  - name: up
    protocol: {protocol}
    endpoints: ["{upstream}"]
    stream_idle_timeout: 500ms
"#
    );
    let proxy = TestServer::start(&yaml, Registry::default());
    let addr = proxy.addr("l");
    (proxy, addr)
}

/// Asserts that what started at `started` ended within a few stream idle timeouts
/// (500 ms here), not after some other, longer timeout.
fn within_stall_bound(started: Instant) {
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

fn upstream_connections(server: &Server) -> u32 {
    server.snapshot().clusters["up"].endpoints[0].open_connections()
}

#[tokio::test]
async fn a_request_body_that_stops_arriving_is_given_up() {
    let up = upstream(10);
    let (mut proxy, addr) = start(up.addr);
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        c.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
            .await
            .unwrap();
        c.write_all(&[b'a'; 1000]).await.unwrap();
        let started = Instant::now();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out).await; // the proxy answers and closes
        let out = String::from_utf8_lossy(&out);
        assert!(out.starts_with("HTTP/1.1 408"), "{out}");
        assert!(out.contains("x-proxy-error: request_timeout\r\n"), "{out}");
        within_stall_bound(started);
    })
    .await
    .unwrap();
    proxy.stop();
}

#[tokio::test]
async fn a_client_that_stops_reading_is_given_up() {
    let up = upstream(64 * 1024 * 1024);
    let (mut proxy, addr) = start(up.addr);
    tokio::time::timeout(Duration::from_secs(15), async {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        c.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        // Read a little, then stop reading while keeping the connection open.
        let mut first = [0u8; 1024];
        let _ = c.read(&mut first).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(upstream_connections(proxy.server()), 1);
        let deadline = Instant::now() + Duration::from_secs(5);
        while upstream_connections(proxy.server()) != 0 {
            assert!(
                Instant::now() < deadline,
                "the upstream connection is still held"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(c);
    })
    .await
    .unwrap();
    proxy.stop();
}

/// An HTTP/2 connection to `addr` (prior knowledge) that lets the server send at most
/// `window` bytes per stream until the client releases them, and the task driving it
/// (aborted to close the connection).
async fn h2_client(
    addr: std::net::SocketAddr,
    window: u32,
) -> (h2::client::SendRequest<Bytes>, tokio::task::JoinHandle<()>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(window)
        .handshake(tcp)
        .await
        .unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (send.ready().await.unwrap(), task)
}

/// Waits until the proxy holds no upstream connection, for at most five seconds.
async fn until_upstream_released(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while upstream_connections(server) != 0 {
        assert!(
            Instant::now() < deadline,
            "the upstream connection is still held"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_http2_request_body_that_stops_arriving_is_given_up() {
    let up = upstream(10);
    let (mut proxy, addr) = start(up.addr);
    tokio::time::timeout(Duration::from_secs(10), async {
        let (mut client, conn) = h2_client(addr, 65_535).await;
        let req = http::Request::post("http://x/")
            .header("content-length", "100000")
            .body(())
            .unwrap();
        let (resp, mut body) = client.send_request(req, false).unwrap();
        body.send_data(Bytes::from(vec![b'a'; 1000]), false)
            .unwrap();
        let started = Instant::now();
        // The stream and the connection stay open; only the body stops.
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 408);
        assert_eq!(resp.headers()["x-proxy-error"], "request_timeout");
        within_stall_bound(started);
        until_upstream_released(proxy.server()).await;
        drop(body);
        conn.abort();
        let _ = conn.await;
    })
    .await
    .unwrap();
    proxy.stop();
}

#[tokio::test]
async fn an_http2_client_that_opens_no_window_is_given_up() {
    let up = upstream(4 * 1024 * 1024);
    let (mut proxy, addr) = start(up.addr);
    tokio::time::timeout(Duration::from_secs(15), async {
        // A stream window of zero, never released: no byte of the answer can go.
        let (mut client, conn) = h2_client(addr, 0).await;
        let req = http::Request::get("http://x/big").body(()).unwrap();
        let (resp, _) = client.send_request(req, true).unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let reset = loop {
            match body.data().await {
                Some(Ok(_)) => {}
                Some(Err(e)) => break e,
                None => panic!("the answer ended without a window to send it"),
            }
        };
        assert_eq!(reset.reason(), Some(h2::Reason::CANCEL), "{reset}");
        until_upstream_released(proxy.server()).await;
        conn.abort();
        let _ = conn.await;
    })
    .await
    .unwrap();
    proxy.stop();
}

#[tokio::test]
async fn an_http2_upstream_whose_answer_stops_is_given_up() {
    // An HTTP/2 upstream that sends a head and one chunk, then neither more nor the
    // end, while keeping its connection alive.
    let up = spawn_raw(|tcp, _| async move {
        let Ok(mut conn) = h2::server::handshake(tcp).await else {
            return;
        };
        let mut held = Vec::new();
        while let Some(Ok((_req, mut respond))) = conn.accept().await {
            let resp = http::Response::builder().status(200).body(()).unwrap();
            if let Ok(mut tx) = respond.send_response(resp, false) {
                let _ = tx.send_data(Bytes::from_static(b"partial"), false);
                held.push(tx);
            }
        }
    });
    let (mut proxy, addr) = start_with(up.addr, "http2");
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        let mut out = Vec::new();
        // The head and the chunk, then the connection closes: the answer is cut
        // short, so the client cannot take it for whole.
        let _ = c.read_to_end(&mut out).await;
        let out = String::from_utf8_lossy(&out);
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.contains("partial"), "{out}");
        assert!(!out.ends_with("0\r\n\r\n"), "ended as if complete: {out}");
        within_stall_bound(started);
    })
    .await
    .unwrap();
    proxy.stop();
}

/// An upstream that reads requests and never answers, keeping its connections open.
fn never_answers() -> Upstream {
    spawn_raw(|mut s, _| async move {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = s.read(&mut chunk).await {
            if n == 0 {
                break;
            }
        }
    })
}

#[tokio::test]
async fn a_client_that_gives_up_waiting_lets_the_upstream_go() {
    let up = never_answers();
    let (mut proxy, addr) = start(up.addr);
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(upstream_connections(proxy.server()), 1);
        // The client's own timeout: it closes without reading an answer.
        drop(c);
        until_upstream_released(proxy.server()).await;
    })
    .await
    .unwrap();
    proxy.stop();
}

#[tokio::test]
async fn a_client_that_half_closes_after_a_close_request_is_answered() {
    let up = upstream(10);
    let (mut proxy, addr) = start(up.addr);
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        // Done sending, as `printf ... | nc` is.
        c.shutdown().await.unwrap();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out).await;
        let out = String::from_utf8_lossy(&out);
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.ends_with("xxxxxxxxxx"), "{out}");
    })
    .await
    .unwrap();
    proxy.stop();
}

#[tokio::test]
async fn a_request_pipelined_behind_a_slow_one_is_answered_in_order() {
    // Answers each request 200 ms after its head, on a keep-alive connection.
    let up = spawn_raw(|mut s, _| async move {
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            while let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                got.drain(..end + 4);
                tokio::time::sleep(Duration::from_millis(200)).await;
                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                if s.write_all(answer).await.is_err() {
                    return;
                }
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    });
    let (mut proxy, addr) = start(up.addr);
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        // The second request arrives while the first waits for its answer.
        c.write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        c.write_all(b"GET /2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out).await;
        let out = String::from_utf8_lossy(&out);
        assert_eq!(out.matches("HTTP/1.1 200").count(), 2, "{out}");
    })
    .await
    .unwrap();
    proxy.stop();
}

/// A bodiless GET that asks the proxy to close after answering.
const GET_AND_CLOSE: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// Sends `request` over HTTP/1.1 (one that asks the proxy to close) and asserts a 504
/// `upstream_timeout` within the stall bound of its last byte.
async fn assert_answer_times_out(addr: std::net::SocketAddr, request: &[u8]) {
    let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
    c.write_all(request).await.unwrap();
    let started = Instant::now();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 504"), "{out}");
    assert!(out.contains("x-proxy-error: upstream_timeout\r\n"), "{out}");
    within_stall_bound(started);
}

#[tokio::test]
async fn an_upstream_that_never_answers_is_given_up() {
    let up = never_answers();
    let (mut proxy, addr) = start(up.addr);
    tokio::time::timeout(Duration::from_secs(10), async {
        assert_answer_times_out(addr, GET_AND_CLOSE).await;
        // The connection whose answer may still come is closed, not pooled.
        until_upstream_released(proxy.server()).await;
        // A second request gets the same bound on a fresh connection.
        assert_answer_times_out(addr, GET_AND_CLOSE).await;
    })
    .await
    .unwrap();
    proxy.stop();
}

/// An HTTP/2 upstream that, if `answer`, reads each request to its end and answers
/// 200 `ok`; otherwise it keeps the stream open, reads none of its body (so its
/// flow-control window never opens again) and says nothing.
fn h2_upstream(answer: bool) -> Upstream {
    spawn_raw(move |tcp, _| async move {
        let Ok(mut conn) = h2::server::handshake(tcp).await else {
            return;
        };
        let mut held = Vec::new();
        while let Some(Ok((req, mut respond))) = conn.accept().await {
            if !answer {
                held.push((req, respond));
                continue;
            }
            tokio::spawn(async move {
                let mut body = req.into_body();
                while let Some(Ok(data)) = body.data().await {
                    let _ = body.flow_control().release_capacity(data.len());
                }
                let resp = http::Response::builder().status(200).body(()).unwrap();
                if let Ok(mut tx) = respond.send_response(resp, false) {
                    let _ = tx.send_data(Bytes::from_static(b"ok"), true);
                }
            });
        }
    })
}

#[tokio::test]
async fn an_http2_upstream_that_never_answers_is_given_up() {
    let up = h2_upstream(false);
    let (mut proxy, addr) = start_with(up.addr, "http2");
    tokio::time::timeout(Duration::from_secs(10), async {
        assert_answer_times_out(addr, GET_AND_CLOSE).await;
        assert_answer_times_out(addr, GET_AND_CLOSE).await;
    })
    .await
    .unwrap();
    proxy.stop();
}

#[tokio::test]
async fn a_request_body_still_coming_from_its_client_does_not_count_against_the_upstream() {
    let up = h2_upstream(true);
    let (mut proxy, addr) = start_with(up.addr, "http2");
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        c.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        // Four chunks 300 ms apart: each within the 500 ms limits, together well
        // past them.
        for _ in 0..4 {
            c.write_all(b"5\r\nhello\r\n").await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        c.write_all(b"0\r\n\r\n").await.unwrap();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out).await;
        let out = String::from_utf8_lossy(&out);
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    })
    .await
    .unwrap();
    proxy.stop();
}

#[tokio::test]
async fn an_http2_upstream_that_stops_taking_the_request_body_is_given_up() {
    // The first 64 KiB fill the stream's window, which never opens again.
    let up = h2_upstream(false);
    let (mut proxy, addr) = start_with(up.addr, "http2");
    tokio::time::timeout(Duration::from_secs(10), async {
        // More than the window, little enough to sit in the sockets' buffers.
        let size = 120_000;
        let mut request = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
        )
        .into_bytes();
        request.resize(request.len() + size, b'a');
        assert_answer_times_out(addr, &request).await;
    })
    .await
    .unwrap();
    proxy.stop();
}
