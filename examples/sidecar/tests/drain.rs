//! SIGTERM with HTTP/1.1 and HTTP/2 requests in flight on keep-alive connections:
//! every answer owed arrives, and each connection ends with a FIN, not a reset. The
//! clients read only after a pause, as a busy client does: a connection closed with
//! unread input makes the kernel send a reset, and a reset makes the client lose the
//! answers it has not read yet (and report ECONNRESET / EPIPE).

use crate::common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use proxy_test_support::{with_timeout, Upstream};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// How long the upstream takes to answer a request sent before the drain.
const SLOW_MS: u64 = 800;

async fn sidecar(protocol: &str) -> (Sidecar, ConfigBuilder, Upstream) {
    let up = Upstream::echo("echo");
    let mut cfg = ConfigBuilder::new()
        .routes(vec![route("r", "/", "c", "")])
        .cluster(cluster("c", up.addr, ""));
    cfg.protocol = protocol.into();
    cfg.top_extra = "runtime:\n  drain_timeout: 10s\n".into();
    let sc = Sidecar::start_with(&mut cfg).await;
    (sc, cfg, up)
}

async fn wait_hits(up: &Upstream, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while up.hits() < n {
        assert!(
            Instant::now() < deadline,
            "requests never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// HTTP/1.1: a slow request on a keep-alive connection, SIGTERM, then a pipelined
/// request on the same connection; nothing is read until the answer is long written.
/// The slow request's answer arrives whole (with `connection: close`), then a FIN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_sigterm_delivers_answers_in_flight_and_ends_with_fin() {
    with_timeout(Duration::from_secs(40), async {
        let (mut sc, cfg, up) = sidecar("http1").await;
        let mut conns = Vec::new();
        for i in 0..4 {
            let mut c = TcpStream::connect(cfg.listen).await.unwrap();
            let req =
                format!("GET /slow/{i} HTTP/1.1\r\nhost: t\r\nx-echo-delay-ms: {SLOW_MS}\r\n\r\n");
            c.write_all(req.as_bytes()).await.unwrap();
            conns.push(c);
        }
        wait_hits(&up, 4).await;
        sc.signal("TERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
        for c in &mut conns {
            // Pipelined behind the slow request: the server has not read it yet.
            let _ = c.write_all(b"GET /late HTTP/1.1\r\nhost: t\r\n\r\n").await;
        }
        tokio::time::sleep(Duration::from_millis(SLOW_MS * 2)).await;
        for (i, c) in conns.iter_mut().enumerate() {
            let mut got = Vec::new();
            let end = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut got))
                .await
                .expect("the connection ends");
            let text = String::from_utf8_lossy(&got);
            assert!(
                end.is_ok(),
                "connection {i} ended with {end:?} after {} bytes: {text}",
                got.len()
            );
            assert!(text.starts_with("HTTP/1.1 200"), "connection {i}: {text}");
            assert!(
                text.contains(&format!("/slow/{i}")),
                "connection {i}: {text}"
            );
            let pending = c.take_error().unwrap();
            assert!(pending.is_none(), "connection {i} was reset: {pending:?}");
        }
        let status = sc.wait_exit(Duration::from_secs(15)).await.expect("exit");
        assert!(status.success(), "exit status after SIGTERM: {status}");
    })
    .await;
}

/// HTTP/2 (h2c): slow requests on one connection, SIGTERM, then one more stream on
/// the same connection: every slow request is answered, the late stream is refused
/// (GOAWAY or REFUSED_STREAM, never served), and the connection ends without an I/O
/// error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_sigterm_delivers_answers_in_flight_and_ends_cleanly() {
    with_timeout(Duration::from_secs(40), async {
        let (mut sc, cfg, up) = sidecar("auto").await;
        let tcp = TcpStream::connect(cfg.listen).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        let conn = tokio::spawn(conn);
        let mut client = client.ready().await.unwrap();
        let mut slow = Vec::new();
        for i in 0..4 {
            let req = http::Request::get(format!("http://t/slow/{i}"))
                .header("x-echo-delay-ms", SLOW_MS.to_string())
                .body(())
                .unwrap();
            let (resp, _) = client.send_request(req, true).unwrap();
            slow.push(resp);
            client = client.ready().await.unwrap();
        }
        wait_hits(&up, 4).await;
        sc.signal("TERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let late = match client.ready().await {
            Ok(mut c) => c
                .send_request(http::Request::get("http://t/late").body(()).unwrap(), true)
                .map(|(r, _)| r),
            Err(e) => Err(e),
        };
        for (i, resp) in slow.into_iter().enumerate() {
            let resp = resp
                .await
                .unwrap_or_else(|e| panic!("slow request {i}: {e}"));
            assert_eq!(resp.status(), 200, "slow request {i}");
            let mut body = resp.into_body();
            let mut got = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk: Bytes = chunk.unwrap_or_else(|e| panic!("slow body {i}: {e}"));
                let _ = body.flow_control().release_capacity(chunk.len());
                got.extend_from_slice(&chunk);
            }
            let text = String::from_utf8_lossy(&got);
            assert!(
                text.contains(&format!("/slow/{i}")),
                "slow request {i}: {text}"
            );
        }
        if let Ok(late) = late {
            let r = late.await;
            assert!(
                r.is_err(),
                "the stream opened after SIGTERM was served: {r:?}"
            );
        }
        assert_eq!(
            up.hits(),
            4,
            "a request sent after SIGTERM reached the upstream"
        );
        let end = tokio::time::timeout(Duration::from_secs(5), conn)
            .await
            .expect("the connection ends")
            .unwrap();
        assert!(end.is_ok(), "the h2 connection ended with {end:?}");
        let status = sc.wait_exit(Duration::from_secs(15)).await.expect("exit");
        assert!(status.success(), "exit status after SIGTERM: {status}");
    })
    .await;
}
