//! A small request body (`content-length` at most `limits.request_body_buffer`) is
//! read whole before its request goes upstream, over HTTP/1.1 and HTTP/2 alike: a
//! client that sends it slowly holds no upstream connection, and one that stops
//! sending it is answered 408 after `header_read_timeout` without the upstream ever
//! hearing of it. Longer bodies, and every body when the buffer is `0`, stream to the
//! upstream as they arrive. curl, posting with `--limit-rate`, sees the same.

// Test helpers: a failed setup should stop the test loudly.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use proxy_core::Registry;
use proxy_test_support::{eventually, tools, TestServer, Upstream};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// A proxy in front of `upstream` whose heads (and small bodies) must arrive within
/// one second, with `request_body_buffer` set to `buffer`.
fn start(upstream: std::net::SocketAddr, buffer: &str) -> (TestServer, std::net::SocketAddr) {
    let limits = format!("header_read_timeout: 1s, request_body_buffer: {buffer}");
    start_with(upstream, &limits, "http1")
}

/// A proxy in front of `upstream` with `limits` on its listener (its stalled bodies
/// given up after thirty seconds), the cluster speaking `protocol` to the upstream.
fn start_with(
    upstream: std::net::SocketAddr,
    limits: &str,
    protocol: &str,
) -> (TestServer, std::net::SocketAddr) {
    let yaml = format!(
        r#"
admin: {{ address: "127.0.0.1:0" }}
listeners:
  - name: l
    address: 127.0.0.1:0
    protocol: auto
    limits: {{ stream_idle_timeout: 30s, {limits} }}
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
"#
    );
    let proxy = TestServer::start(&yaml, Registry::default());
    let addr = proxy.addr("l");
    (proxy, addr)
}

/// A POST of `length` announced bytes to `addr`, with `first` of them sent.
async fn post_part(addr: std::net::SocketAddr, length: usize, first: &[u8]) -> TcpStream {
    let mut c = TcpStream::connect(addr).await.unwrap();
    let head = format!("POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n");
    c.write_all(head.as_bytes()).await.unwrap();
    c.write_all(first).await.unwrap();
    c
}

/// Everything the proxy sends until it closes.
async fn read_all(c: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// An HTTP/2 connection to `addr` (prior knowledge), and the task driving it.
async fn h2_connect(
    addr: std::net::SocketAddr,
) -> (h2::client::SendRequest<Bytes>, tokio::task::JoinHandle<()>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = h2::client::handshake(tcp).await.unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (send.ready().await.unwrap(), task)
}

/// Closes an HTTP/2 connection from [`h2_connect`].
async fn h2_close(client: h2::client::SendRequest<Bytes>, conn: tokio::task::JoinHandle<()>) {
    drop(client);
    conn.abort();
    let _ = conn.await;
}

/// An HTTP/2 POST of `length` announced bytes, its body left open.
fn h2_post(
    client: &mut h2::client::SendRequest<Bytes>,
    length: usize,
) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let req = http::Request::post("http://x/slow")
        .header("content-length", length.to_string())
        .body(())
        .unwrap();
    client.send_request(req, false).unwrap()
}

#[tokio::test]
async fn a_small_body_sent_slowly_reaches_the_upstream_only_whole() {
    let up = Upstream::echo("up");
    let (mut proxy, addr) = start(up.addr, "16KiB");
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut c = post_part(addr, 10, b"12345").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(up.connections(), 0, "an upstream connection was opened");
        c.write_all(b"67890").await.unwrap();
        let mut answer = [0u8; 12];
        c.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 200");
        let seen = up.requests();
        assert_eq!(seen.len(), 1);
        assert_eq!(&seen[0].body[..], b"1234567890");
    })
    .await
    .unwrap();
    proxy.stop();
}

#[tokio::test]
async fn a_small_body_that_stops_arriving_is_a_408_and_never_goes_upstream() {
    let up = Upstream::echo("up");
    let (mut proxy, addr) = start(up.addr, "16KiB");
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut c = post_part(addr, 1000, &[b'a'; 100]).await;
        let started = Instant::now();
        let out = read_all(&mut c).await;
        assert!(out.starts_with("HTTP/1.1 408"), "{out}");
        assert!(out.contains("x-proxy-error: request_timeout\r\n"), "{out}");
        // The head's timeout (1 s), not the stall timeout (30 s).
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(up.connections(), 0);
    })
    .await
    .unwrap();
    proxy.stop();
}

#[tokio::test]
async fn a_small_body_after_100_continue_is_read_whole_first() {
    let up = Upstream::echo("up");
    let (mut proxy, addr) = start(up.addr, "16KiB");
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(
            b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
        let mut interim = [0u8; 25];
        c.read_exact(&mut interim).await.unwrap();
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        assert_eq!(up.connections(), 0);
        c.write_all(b"ping").await.unwrap();
        let mut answer = [0u8; 12];
        c.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 200");
        assert_eq!(&up.requests()[0].body[..], b"ping");
    })
    .await
    .unwrap();
    proxy.stop();
}

/// Whether a POST of `length` announced bytes, with its first 5 sent, reaches the
/// upstream (which opens a connection for it) while the rest is still to come.
async fn goes_upstream_unfinished(buffer: &str, length: usize) {
    let up = Upstream::echo("up");
    let (mut proxy, addr) = start(up.addr, buffer);
    tokio::time::timeout(Duration::from_secs(10), async {
        let _c = post_part(addr, length, b"12345").await;
        assert!(
            eventually(Duration::from_secs(5), || up.connections() == 1).await,
            "the request did not go upstream while its body was arriving"
        );
    })
    .await
    .unwrap();
    proxy.stop();
}

#[tokio::test]
async fn a_body_over_the_buffer_streams_to_the_upstream_as_it_arrives() {
    goes_upstream_unfinished("1KiB", 2000).await;
}

#[tokio::test]
async fn a_buffer_of_zero_streams_every_body() {
    goes_upstream_unfinished("0", 10).await;
}

#[tokio::test]
async fn a_pipelined_request_after_a_small_body_is_answered_too() {
    let up = Upstream::echo("up");
    let (mut proxy, addr) = start(up.addr, "16KiB");
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut c = post_part(addr, 6, b"abc").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The body's end and the next request in one write.
        c.write_all(b"defGET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let out = read_all(&mut c).await;
        assert_eq!(out.matches("HTTP/1.1 200").count(), 2, "{out}");
        let seen = up.requests();
        assert_eq!(seen.len(), 2);
        assert_eq!(&seen[0].body[..], b"abcdef");
        assert_eq!(seen[1].path(), "/next");
    })
    .await
    .unwrap();
    proxy.stop();
}

#[tokio::test]
async fn an_http2_small_body_sent_slowly_reaches_the_upstream_only_whole() {
    let up = Upstream::echo("up");
    let (mut proxy, addr) = start(up.addr, "16KiB");
    tokio::time::timeout(Duration::from_secs(10), async {
        let (mut client, conn) = h2_connect(addr).await;
        let (resp, mut body) = h2_post(&mut client, 10);
        body.send_data(Bytes::from_static(b"12345"), false).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(up.connections(), 0, "an upstream connection was opened");
        body.send_data(Bytes::from_static(b"67890"), true).unwrap();
        assert_eq!(resp.await.unwrap().status(), 200);
        let seen = up.requests();
        assert_eq!(seen.len(), 1);
        assert_eq!(&seen[0].body[..], b"1234567890");
        h2_close(client, conn).await;
    })
    .await
    .unwrap();
    proxy.stop();
}

#[tokio::test]
async fn an_http2_small_body_that_stops_arriving_is_a_408_and_never_goes_upstream() {
    let up = Upstream::echo("up");
    let (mut proxy, addr) = start(up.addr, "16KiB");
    tokio::time::timeout(Duration::from_secs(10), async {
        let (mut client, conn) = h2_connect(addr).await;
        let (resp, mut body) = h2_post(&mut client, 1000);
        body.send_data(Bytes::from(vec![b'a'; 100]), false).unwrap();
        let started = Instant::now();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 408);
        assert_eq!(resp.headers()["x-proxy-error"], "request_timeout");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(up.connections(), 0);
        // The connection's other streams go on.
        let (resp, mut body) = h2_post(&mut client, 2);
        body.send_data(Bytes::from_static(b"ok"), true).unwrap();
        assert_eq!(resp.await.unwrap().status(), 200);
        h2_close(client, conn).await;
    })
    .await
    .unwrap();
    proxy.stop();
}

#[tokio::test]
async fn an_http2_small_body_with_trailers_keeps_them() {
    // An HTTP/2 upstream takes trailers; the body is read whole first all the same.
    let up = Upstream::hyper(|req: http::Request<hyper::body::Incoming>, _| async move {
        use http_body_util::BodyExt;
        let whole = req.into_body().collect().await.unwrap();
        let trailer = whole
            .trailers()
            .and_then(|t| t.get("x-check"))
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = format!("{}|{trailer}", String::from_utf8_lossy(&whole.to_bytes()));
        proxy_test_support::upstream::response(200, body)
    });
    let (mut proxy, addr) = start_with(up.addr, "header_read_timeout: 1s", "http2");
    tokio::time::timeout(Duration::from_secs(10), async {
        let (mut client, conn) = h2_connect(addr).await;
        let (resp, mut body) = h2_post(&mut client, 5);
        body.send_data(Bytes::from_static(b"hello"), false).unwrap();
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-check", "yes".parse().unwrap());
        body.send_trailers(trailers).unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut recv = resp.into_body();
        let mut out = Vec::new();
        while let Some(chunk) = recv.data().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(&out[..], b"hello|yes");
        h2_close(client, conn).await;
    })
    .await
    .unwrap();
    proxy.stop();
}

/// curl posting 8 KiB at `rate` bytes a second through a proxy whose small bodies
/// must arrive within `within`: its status code, and the upstream's connections
/// counted one second in.
async fn curl_slow_post(rate: &str, within: &str) -> Option<(String, u64, Upstream)> {
    let up = Upstream::echo("up");
    let limits = format!("header_read_timeout: {within}");
    let (mut proxy, addr) = start_with(up.addr, &limits, "http1");
    let url = format!("http://{addr}/slow");
    let feed: tools::Feeder = Box::new(|mut stdin| {
        tokio::spawn(async move {
            let _ = stdin.write_all(&[b'a'; 8192]).await;
        })
    });
    let args = [
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--limit-rate",
        rate,
        "--data-binary",
        "@-",
        &url,
    ];
    let curl = tools::run("curl", &args, Some(feed), Duration::from_secs(20));
    let midway = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        up.connections()
    };
    let (out, midway) = tokio::join!(curl, midway);
    proxy.stop();
    Some((out?.stdout_text(), midway, up))
}

#[tokio::test]
async fn curl_posting_slowly_reaches_the_upstream_only_whole() {
    // 8 KiB at 2 KiB/s: about four seconds, within ten.
    let Some((status, midway, up)) = curl_slow_post("2K", "10s").await else {
        return;
    };
    assert_eq!(status, "200");
    assert_eq!(
        midway, 0,
        "an upstream connection was open while the body arrived"
    );
    assert_eq!(up.requests()[0].body.len(), 8192);
}

#[tokio::test]
async fn curl_posting_too_slowly_gets_a_408() {
    // 8 KiB at 1 KiB/s: about eight seconds, past two.
    let Some((status, midway, up)) = curl_slow_post("1K", "2s").await else {
        return;
    };
    assert_eq!(status, "408");
    assert_eq!(midway, 0);
    assert_eq!(up.connections(), 0);
}
