//! A request body longer than `limits.request_body_buffer`, or of unknown length,
//! streams to the upstream as it arrives, and must average
//! `limits.request_body_min_rate` after a grace of `header_read_timeout`: a client
//! that trickles an upload (with a `content-length`, chunked, or over HTTP/2 with no
//! length) is answered 408 within seconds, and the upstream connection it held is
//! closed, over HTTP/1.1 and HTTP/2 alike. An upload at the rate goes through, as do
//! gRPC streams however slow, and every body when the rate is `0`.

// Test helpers: a failed setup should stop the test loudly.
#![allow(clippy::unwrap_used)]

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use proxy_core::Registry;
use proxy_test_support::{eventually, tools, upstream, yaml, TestServer, Upstream};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// A proxy in front of `upstream`: bodies over 1 KiB stream, at `min_rate` after a
/// one-second grace (stalled bodies given up after thirty seconds).
fn start(upstream: std::net::SocketAddr, min_rate: &str) -> (TestServer, std::net::SocketAddr) {
    let limits = format!(
        "limits: {{ header_read_timeout: 1s, stream_idle_timeout: 30s, \
         request_body_buffer: 1KiB, request_body_min_rate: {min_rate} }}"
    );
    let yaml = yaml::config(
        &[yaml::listener("l", "up", &["protocol: auto", &limits])],
        &[yaml::cluster("up", &[upstream], &[])],
    );
    let proxy = TestServer::start(&yaml, Registry::default());
    let addr = proxy.addr("l");
    (proxy, addr)
}

/// What a silent upstream saw of one request: the bytes, and whether the proxy
/// closed the connection.
#[derive(Default)]
struct Held {
    bytes: AtomicU64,
    closed: AtomicBool,
}

/// An upstream that answers a `GET` and otherwise reads what comes, answering
/// nothing.
fn silent_upstream() -> (Upstream, Arc<Held>) {
    let held = Arc::new(Held::default());
    let seen = held.clone();
    let up = upstream::spawn_raw(move |mut s: TcpStream, _| {
        let seen = seen.clone();
        async move {
            let mut buf = [0u8; 4096];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) if buf.starts_with(b"GET ") => {
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        let _ = s.write_all(ok).await;
                    }
                    Ok(n) => {
                        seen.bytes.fetch_add(n as u64, Ordering::SeqCst);
                    }
                }
            }
            seen.closed.store(true, Ordering::SeqCst);
        }
    });
    (up, held)
}

/// Sends `chunk` every `every` on `c`, until the write fails.
fn trickle(mut c: tokio::net::tcp::OwnedWriteHalf, chunk: &'static [u8], every: Duration) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if c.write_all(chunk).await.is_err() {
                break;
            }
        }
    });
}

/// Over HTTP/1.1, a `POST` framed by `framing` whose first 2 KiB (as `first`) come at
/// once and the rest as `piece` (ten bytes of body) every 100 ms: 100 bytes a second,
/// a tenth of the rate. It is a 408 within seconds and its upstream connection closes.
async fn trickled_upload_is_a_408_and_its_upstream_connection_is_closed(
    framing: &str,
    first: &[u8],
    piece: &'static [u8],
) {
    let (up, held) = silent_upstream();
    let (mut proxy, addr) = start(up.addr, "1KiB");
    tokio::time::timeout(Duration::from_secs(15), async {
        let c = TcpStream::connect(addr).await.unwrap();
        let (mut read, mut write) = c.into_split();
        let head = format!("POST /up HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n");
        write.write_all(head.as_bytes()).await.unwrap();
        write.write_all(first).await.unwrap();
        let started = Instant::now();
        trickle(write, piece, Duration::from_millis(100));
        let mut out = Vec::new();
        let _ = read.read_to_end(&mut out).await;
        let out = String::from_utf8_lossy(&out);
        assert!(out.starts_with("HTTP/1.1 408"), "{out}");
        assert!(out.contains("x-proxy-error: request_timeout\r\n"), "{out}");
        // The grace (1 s) and what 2 KiB earn (2 s), give or take the trickle's share;
        // not the stall timeout (30 s), which the trickle would never reach.
        let took = started.elapsed();
        assert!(took < Duration::from_secs(8), "{took:?}");
        assert!(up.connections() == 1 && held.bytes.load(Ordering::SeqCst) > 2048);
        assert!(
            eventually(Duration::from_secs(3), || held
                .closed
                .load(Ordering::SeqCst))
            .await,
            "the upstream connection stayed open"
        );
    })
    .await
    .unwrap();
    proxy.stop();
}

#[tokio::test]
async fn a_large_body_trickled_is_a_408_and_its_upstream_connection_is_closed() {
    trickled_upload_is_a_408_and_its_upstream_connection_is_closed(
        "Content-Length: 1000000",
        &[b'a'; 2048],
        b"aaaaaaaaaa",
    )
    .await;
}

#[tokio::test]
async fn a_chunked_body_trickled_is_a_408_and_its_upstream_connection_is_closed() {
    let mut first = b"800\r\n".to_vec();
    first.extend_from_slice(&[b'a'; 2048]);
    first.extend_from_slice(b"\r\n");
    trickled_upload_is_a_408_and_its_upstream_connection_is_closed(
        "Transfer-Encoding: chunked",
        &first,
        b"a\r\naaaaaaaaaa\r\n",
    )
    .await;
}

/// Over HTTP/2, a `POST` whose first 2 KiB come at once and the rest ten bytes every
/// 100 ms, announced as `content_length` (or not at all): a 408 within seconds, its
/// upstream connection closed, and the connection's next stream answered.
async fn http2_trickled_upload_is_a_408_and_the_connection_goes_on(content_length: Option<&str>) {
    let (up, held) = silent_upstream();
    let (mut proxy, addr) = start(up.addr, "1KiB");
    tokio::time::timeout(Duration::from_secs(15), async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = http::Request::post("http://x/up");
        if let Some(n) = content_length {
            req = req.header("content-length", n);
        }
        let req = req.body(()).unwrap();
        let (resp, mut body) = client.send_request(req, false).unwrap();
        body.send_data(Bytes::from(vec![b'a'; 2048]), false)
            .unwrap();
        let started = Instant::now();
        let trickler = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if body
                    .send_data(Bytes::from_static(b"aaaaaaaaaa"), false)
                    .is_err()
                {
                    break;
                }
            }
        });
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 408);
        assert_eq!(resp.headers()["x-proxy-error"], "request_timeout");
        assert!(started.elapsed() < Duration::from_secs(8));
        trickler.abort();
        assert!(
            eventually(Duration::from_secs(3), || held
                .closed
                .load(Ordering::SeqCst))
            .await,
            "the upstream connection stayed open"
        );
        // The connection's other streams go on.
        let req = http::Request::get("http://x/next").body(()).unwrap();
        let (next, _) = client.send_request(req, true).unwrap();
        assert_eq!(next.await.unwrap().status(), 200);
        drop(client);
        conn.abort();
        let _ = conn.await;
    })
    .await
    .unwrap();
    proxy.stop();
}

#[tokio::test]
async fn an_http2_large_body_trickled_is_a_408_and_the_connection_goes_on() {
    http2_trickled_upload_is_a_408_and_the_connection_goes_on(Some("1000000")).await;
}

#[tokio::test]
async fn an_http2_body_of_no_length_trickled_is_a_408_and_the_connection_goes_on() {
    http2_trickled_upload_is_a_408_and_the_connection_goes_on(None).await;
}

/// Posts 2,000 bytes in 20 writes over five seconds (far below 1 KiB a second past
/// the grace), with a `content-length` or chunked, with `extra` header lines, through a
/// proxy asking `min_rate`: whether it is answered 200 with the whole body upstream.
async fn a_slow_post_goes_through(min_rate: &str, chunked: bool, extra: &str) {
    let up = Upstream::echo("up");
    let (mut proxy, addr) = start(up.addr, min_rate);
    let status = tokio::time::timeout(Duration::from_secs(15), async {
        let mut c = TcpStream::connect(addr).await.unwrap();
        let framing = if chunked {
            "Transfer-Encoding: chunked"
        } else {
            "Content-Length: 2000"
        };
        let head = format!(
            "POST /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{framing}\r\n{extra}\r\n"
        );
        c.write_all(head.as_bytes()).await.unwrap();
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let mut piece = Vec::new();
            if chunked {
                piece.extend_from_slice(b"64\r\n");
            }
            piece.extend_from_slice(&[b'a'; 100]);
            if chunked {
                piece.extend_from_slice(b"\r\n");
            }
            c.write_all(&piece).await.unwrap();
        }
        if chunked {
            c.write_all(b"0\r\n\r\n").await.unwrap();
        }
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    })
    .await
    .unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(up.requests()[0].body.len(), 2000);
    proxy.stop();
}

#[tokio::test]
async fn a_grpc_stream_of_unknown_length_is_not_held_to_the_rate() {
    a_slow_post_goes_through("1KiB", true, "Content-Type: application/grpc\r\n").await;
}

#[tokio::test]
async fn a_rate_of_zero_lets_a_large_body_take_its_time() {
    a_slow_post_goes_through("0", false, "").await;
}

#[tokio::test]
async fn a_rate_of_zero_lets_a_chunked_body_take_its_time() {
    a_slow_post_goes_through("0", true, "").await;
}

#[tokio::test]
async fn curl_uploading_at_the_rate_goes_through() {
    // 24 KiB at 8 KiB a second (three seconds), with 1 KiB a second asked for.
    let up = Upstream::echo("up");
    let (mut proxy, addr) = start(up.addr, "1KiB");
    let url = format!("http://{addr}/up");
    let feed: tools::Feeder = Box::new(|mut stdin| {
        tokio::spawn(async move {
            let _ = stdin.write_all(&[b'a'; 24 * 1024]).await;
        })
    });
    let args = [
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--limit-rate",
        "8K",
        "--data-binary",
        "@-",
        &url,
    ];
    let out = tools::run("curl", &args, Some(feed), Duration::from_secs(20)).await;
    proxy.stop();
    let Some(out) = out else {
        return;
    };
    assert_eq!(out.stdout_text(), "200");
    let seen = &up.requests()[0];
    assert_eq!(seen.body.len(), 24 * 1024);
    // Held to the rate, the body still goes upstream with its announced length.
    assert_eq!(seen.header("content-length"), Some("24576"));
    assert_eq!(seen.header("transfer-encoding"), None);
}
