//! An HTTP/2 client's streams, as an attacker or a careless client may use them: the
//! proxy's answers and resets leave without waiting for the client's next frame, a
//! stream the client resets is never handed to the upstream as a whole request, the
//! rapid-reset defence closes an abusive connection at once (`ENHANCE_YOUR_CALM`,
//! no stream served after it) but not a client that cancels now and then, a flood of
//! frames that move no request forward (PRIORITY, WINDOW_UPDATE) ends its connection
//! the same way, the listener's `max_headers` and the grammar of `Host` hold for
//! HTTP/2 requests (their `:authority`) as for HTTP/1.1 ones, and a field value with
//! white space at either end (malformed in HTTP/2) is refused, in the head or in the
//! trailers.

// Test helpers: a failed setup should stop the test loudly.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use proxy_core::Registry;
use proxy_test_support::{TestServer, Upstream};

/// A proxy in front of `upstream` with `limits` on its listener.
fn start(upstream: std::net::SocketAddr, limits: &str) -> (TestServer, std::net::SocketAddr) {
    let yaml = format!(
        r#"
admin: {{ address: "127.0.0.1:0" }}
listeners:
  - name: l
    address: 127.0.0.1:0
    protocol: auto
    limits: {{ {limits} }}
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {{ path: {{ prefix: "/" }} }}
            cluster: up
clusters:
  - name: up
    endpoints: ["{upstream}"]
"#
    );
    let proxy = TestServer::start(&yaml, Registry::default());
    let addr = proxy.addr("l");
    (proxy, addr)
}

/// An HTTP/2 connection to `addr` (prior knowledge), and the task driving it, which
/// ends with the connection's own end.
async fn connect(
    addr: std::net::SocketAddr,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (send, conn) = h2::client::handshake(tcp).await.unwrap();
    (send.ready().await.unwrap(), tokio::spawn(conn))
}

/// Closes a client connection from [`connect`] and waits until it is closed.
async fn hang_up(conn: tokio::task::JoinHandle<Result<(), h2::Error>>) {
    conn.abort();
    let _ = conn.await;
}

fn get(path: &str, delay_ms: u64) -> http::Request<()> {
    http::Request::get(format!("http://x{path}"))
        .header("x-echo-delay-ms", delay_ms.to_string())
        .body(())
        .unwrap()
}

/// The status and whole body of `resp`.
async fn answer(resp: h2::client::ResponseFuture) -> Result<(u16, Bytes), h2::Error> {
    let resp = resp.await?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    Ok((status, data.into()))
}

/// The bodies of the requests to `path` that `up` received whole.
fn whole_bodies(up: &Upstream, path: &str) -> Vec<Bytes> {
    up.requests()
        .into_iter()
        .filter(|r| r.path() == path)
        .map(|r| r.body)
        .collect()
}

/// The status of the answer to `req`, sent on `client` as a request without a body.
async fn status_of(client: &h2::client::SendRequest<Bytes>, req: http::Request<()>) -> u16 {
    let mut c = client.clone().ready().await.unwrap();
    let (resp, _) = c.send_request(req, true).unwrap();
    answer(resp).await.unwrap().0
}

#[tokio::test]
async fn a_stream_error_leaves_without_waiting_for_the_client() {
    let up = Upstream::echo("up");
    let (mut proxy, addr) = start(up.addr, "idle_timeout: 60s");
    tokio::time::timeout(Duration::from_secs(20), async {
        let (mut client, conn) = connect(addr).await;
        // Five bytes where `content-length` announces ten: a malformed request
        // (RFC 9113, 8.1.1), reset by the proxy. The client sends nothing after it.
        let req = http::Request::post("http://x/short")
            .header("content-length", "10")
            .body(())
            .unwrap();
        let (resp, mut body) = client.send_request(req, false).unwrap();
        body.send_data(Bytes::from_static(b"12345"), true).unwrap();
        let started = Instant::now();
        let err = resp.await.expect_err("the stream is reset");
        assert_eq!(err.reason(), Some(h2::Reason::PROTOCOL_ERROR), "{err}");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(3), "the reset took {took:?}");
        hang_up(conn).await;
    })
    .await
    .unwrap();
    proxy.stop();
}

#[tokio::test]
async fn an_answer_leaves_at_once_when_a_stream_beside_it_is_reset() {
    let up = Upstream::echo("up");
    let (mut proxy, addr) = start(up.addr, "h2_max_pending_reset_streams: 1000");
    tokio::time::timeout(Duration::from_secs(60), async {
        let (client, conn) = connect(addr).await;
        // A slow stream reset while a fast one is answered: the rounds in which the
        // reset stream ends in the same turn of the connection as the answer must
        // still write the answer without the client sending anything more.
        for round in 0..60u64 {
            let mut c = client.clone().ready().await.unwrap();
            let (_slow_resp, mut slow) = c.send_request(get("/slow", 5_000), true).unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            let mut c = client.clone().ready().await.unwrap();
            let (fast, _) = c.send_request(get("/fast", 0), true).unwrap();
            tokio::time::sleep(Duration::from_micros(round % 4 * 500)).await;
            slow.send_reset(h2::Reason::CANCEL);
            let started = Instant::now();
            let (status, _) = tokio::time::timeout(Duration::from_secs(3), answer(fast))
                .await
                .unwrap_or_else(|_| panic!("round {round}: the answer was not written"))
                .unwrap();
            assert_eq!(status, 200);
            assert!(started.elapsed() < Duration::from_secs(2), "round {round}");
        }
        hang_up(conn).await;
    })
    .await
    .unwrap();
    proxy.stop();
}

#[tokio::test]
async fn a_request_the_client_resets_with_no_error_is_not_completed_upstream() {
    let up = Upstream::echo("up");
    let (mut proxy, addr) = start(up.addr, "idle_timeout: 60s");
    tokio::time::timeout(Duration::from_secs(20), async {
        for reason in [h2::Reason::NO_ERROR, h2::Reason::CANCEL] {
            let (mut client, conn) = connect(addr).await;
            // No `content-length`: the upstream gets the body chunked, and only the
            // last chunk would tell it the body is whole.
            let req = http::Request::post("http://x/upload").body(()).unwrap();
            let (_resp, mut body) = client.send_request(req, false).unwrap();
            body.send_data(Bytes::from_static(b"{\"amount\": 10"), false)
                .unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            body.send_reset(reason);
            tokio::time::sleep(Duration::from_millis(500)).await;
            let whole = whole_bodies(&up, "/upload");
            assert!(
                whole.is_empty(),
                "a body cut off by a {reason:?} reset reached the upstream whole: {whole:?}"
            );
            hang_up(conn).await;
        }
    })
    .await
    .unwrap();
    proxy.stop();
}

#[tokio::test]
async fn a_reset_flood_ends_the_connection_at_once_with_enhance_your_calm() {
    let up = Upstream::echo("up");
    let (mut proxy, addr) = start(up.addr, "h2_max_pending_reset_streams: 10");
    tokio::time::timeout(Duration::from_secs(30), async {
        let (client, conn) = connect(addr).await;
        let mut opened = 0;
        for i in 0..200 {
            if conn.is_finished() {
                break;
            }
            let Ok(mut c) = client.clone().ready().await else {
                break;
            };
            let Ok((_resp, mut stream)) = c.send_request(get(&format!("/r{i}"), 2_000), true)
            else {
                break;
            };
            // Taken up by the proxy (and sent upstream) before it is reset.
            tokio::time::sleep(Duration::from_millis(5)).await;
            stream.send_reset(h2::Reason::CANCEL);
            opened += 1;
        }
        let ended = tokio::time::timeout(Duration::from_secs(5), conn)
            .await
            .expect("the connection ends")
            .unwrap();
        let err = ended.expect_err("ended by the proxy with an error code");
        assert_eq!(
            err.reason(),
            Some(h2::Reason::ENHANCE_YOUR_CALM),
            "after {opened} streams: {err}"
        );
        // The limit, and the few streams in flight when it was passed.
        assert!(
            opened < 40,
            "{opened} streams were taken before the connection ended"
        );
    })
    .await
    .unwrap();
    proxy.stop();
}

#[tokio::test]
async fn a_client_that_cancels_now_and_then_keeps_its_connection() {
    let up = Upstream::echo("up");
    let (mut proxy, addr) = start(up.addr, "h2_max_pending_reset_streams: 5");
    tokio::time::timeout(Duration::from_secs(60), async {
        let (client, conn) = connect(addr).await;
        // Twice the limit of cancels, each among ten answered requests.
        for round in 0..10 {
            for i in 0..10 {
                let mut c = client.clone().ready().await.unwrap();
                let (resp, _) = c
                    .send_request(get(&format!("/ok{round}-{i}"), 0), true)
                    .unwrap();
                assert_eq!(answer(resp).await.unwrap().0, 200);
            }
            let mut c = client.clone().ready().await.unwrap();
            let (_resp, mut stream) = c
                .send_request(get(&format!("/cancel{round}"), 2_000), true)
                .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            stream.send_reset(h2::Reason::CANCEL);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!conn.is_finished(), "the connection was closed");
        assert_eq!(status_of(&client, get("/still", 0)).await, 200);
        hang_up(conn).await;
    })
    .await
    .unwrap();
    proxy.stop();
}

#[tokio::test]
async fn more_fields_than_max_headers_get_431_over_http2() {
    let up = Upstream::echo("up");
    let (mut proxy, addr) = start(up.addr, "max_headers: 20");
    tokio::time::timeout(Duration::from_secs(20), async {
        let (mut client, conn) = connect(addr).await;
        let mut req = http::Request::get("http://x/many");
        for i in 0..30 {
            req = req.header(format!("x-h-{i}"), "v");
        }
        let (resp, _) = client.send_request(req.body(()).unwrap(), true).unwrap();
        let (status, _) = answer(resp).await.unwrap();
        assert_eq!(status, 431);
        assert_eq!(up.hits(), 0, "the request reached the upstream");
        // Within the limit, the same connection serves.
        assert_eq!(status_of(&client, get("/few", 0)).await, 200);
        hang_up(conn).await;
    })
    .await
    .unwrap();
    proxy.stop();
}

/// A raw HTTP/2 frame: header (length, type, flags, stream) and payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Sends the preface and `flood` on a raw connection; the error code of the GOAWAY
/// the proxy answers with, `None` when the connection ends without one.
async fn goaway_after(addr: std::net::SocketAddr, flood: Vec<u8>) -> Option<u32> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend(frame(0x4, 0, 0, &[]));
    bytes.extend(flood);
    let (mut rd, mut wr) = tcp.split();
    // The proxy may close before it has read all: the write's error is the answer.
    let write = async move {
        let _ = wr.write_all(&bytes).await;
    };
    let read = async move {
        let mut got = Vec::new();
        let mut chunk = [0u8; 16384];
        loop {
            // Whole frames in `got`: look for the GOAWAY.
            let mut at = 0;
            while got.len() >= at + 9 {
                let len = usize::from(got[at]) << 16
                    | usize::from(got[at + 1]) << 8
                    | usize::from(got[at + 2]);
                if got.len() < at + 9 + len {
                    break;
                }
                if got[at + 3] == 0x7 && len >= 8 {
                    let code = &got[at + 13..at + 17];
                    return Some(u32::from_be_bytes(code.try_into().unwrap()));
                }
                at += 9 + len;
            }
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let (_, code) = tokio::join!(write, read);
    code
}

#[tokio::test]
async fn a_flood_of_frames_that_move_nothing_forward_ends_the_connection() {
    let up = Upstream::echo("up");
    let (mut proxy, addr) = start(up.addr, "idle_timeout: 60s");
    tokio::time::timeout(Duration::from_secs(30), async {
        const ENHANCE_YOUR_CALM: u32 = 0xb;
        let priority: Vec<u8> = (0..30_000)
            .flat_map(|_| frame(0x2, 0, 3, &[0, 0, 0, 1, 16]))
            .collect();
        assert_eq!(goaway_after(addr, priority).await, Some(ENHANCE_YOUR_CALM));
        let window_updates: Vec<u8> = (0..30_000)
            .flat_map(|_| frame(0x8, 0, 0, &1u32.to_be_bytes()))
            .collect();
        assert_eq!(
            goaway_after(addr, window_updates).await,
            Some(ENHANCE_YOUR_CALM)
        );
        // Another client is served.
        let (mut client, conn) = connect(addr).await;
        let (resp, _) = client.send_request(get("/after", 0), true).unwrap();
        assert_eq!(answer(resp).await.unwrap().0, 200);
        hang_up(conn).await;
    })
    .await
    .unwrap();
    proxy.stop();
}

#[tokio::test]
async fn an_authority_outside_the_host_grammar_is_refused_over_http2() {
    let up = Upstream::echo("up");
    let (mut proxy, addr) = start(up.addr, "idle_timeout: 60s");
    tokio::time::timeout(Duration::from_secs(20), async {
        let (client, conn) = connect(addr).await;
        // `:authority` becomes the Host sent on: no userinfo (RFC 9113 8.3.1).
        for target in ["http://user@a.example/x", "http://a.example:80x/x"] {
            let req = http::Request::get(target).body(()).unwrap();
            assert_eq!(status_of(&client, req).await, 400, "{target}");
        }
        assert_eq!(up.hits(), 0, "a request reached the upstream");
        hang_up(conn).await;
    })
    .await
    .unwrap();
    proxy.stop();
}

#[tokio::test]
async fn a_field_value_with_white_space_at_either_end_is_refused_over_http2() {
    let up = Upstream::echo("up");
    let (mut proxy, addr) = start(up.addr, "idle_timeout: 60s");
    tokio::time::timeout(Duration::from_secs(20), async {
        let (client, conn) = connect(addr).await;
        // Malformed in HTTP/2 (RFC 9113 8.2.1); HTTP/1.1 would trim it away.
        for value in [" lead", "trail\t", "\tboth "] {
            let req = http::Request::get("http://x/pad")
                .header("x-pad", value)
                .body(())
                .unwrap();
            assert_eq!(status_of(&client, req).await, 400, "{value:?}");
        }
        assert_eq!(up.hits(), 0, "a request reached the upstream");
        // White space inside a value is fine.
        let req = http::Request::get("http://x/inner")
            .header("x-pad", "in side")
            .body(())
            .unwrap();
        assert_eq!(status_of(&client, req).await, 200);
        hang_up(conn).await;
    })
    .await
    .unwrap();
    proxy.stop();
}

#[tokio::test]
async fn trailers_with_white_space_at_either_end_of_a_value_fail_the_request() {
    let up = Upstream::echo("up");
    let (mut proxy, addr) = start(up.addr, "idle_timeout: 60s");
    tokio::time::timeout(Duration::from_secs(20), async {
        let (mut client, conn) = connect(addr).await;
        let req = http::Request::post("http://x/upload").body(()).unwrap();
        let (resp, mut body) = client.send_request(req, false).unwrap();
        body.send_data(Bytes::from_static(b"{\"amount\": 10}"), false)
            .unwrap();
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-signature", http::HeaderValue::from_static("abc "));
        body.send_trailers(trailers).unwrap();
        let (status, text) = answer(resp).await.unwrap();
        assert_eq!(status, 400, "{text:?}");
        assert!(
            String::from_utf8_lossy(&text).contains("invalid request trailers"),
            "{text:?}"
        );
        let whole = whole_bodies(&up, "/upload");
        assert!(
            whole.is_empty(),
            "the request reached the upstream whole: {whole:?}"
        );
        hang_up(conn).await;
    })
    .await
    .unwrap();
    proxy.stop();
}
