//! A local reply says why: a connect failure answers 503 with `x-proxy-error:
//! connect_failure`, the finer `x-proxy-error-detail` and the cause in the body.

use std::time::Duration;

use proxy_core::Registry;
use proxy_test_support::{client, closed_port, server::TestServer, timeout::with_timeout, yaml};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_say_why() {
    with_timeout(Duration::from_secs(60), async {
        let closed = closed_port();
        let cfg = yaml::config(
            &[yaml::listener("web", "app", &[])],
            &[yaml::cluster("app", &[closed], &[])],
        );
        let server = TestServer::start(&cfg, Registry::default());
        let resp = client::get(server.addr("web"), "/", &[]).await;
        assert_eq!(resp.status, 503);
        assert_eq!(resp.header("x-proxy-error"), Some("connect_failure"));
        assert_eq!(
            resp.header("x-proxy-error-detail"),
            Some("connection_refused")
        );
        let text = resp.text();
        assert!(
            text.contains(&closed.to_string()) && text.to_lowercase().contains("refused"),
            "{text}"
        );
    })
    .await;
}

/// An HTTP/2 upstream whose frames this side's HTTP/2 stack refuses (a header block
/// that is not HPACK) is a protocol error, not a reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_upstream_that_breaks_the_protocol_says_so() {
    with_timeout(Duration::from_secs(60), async {
        let up = proxy_test_support::upstream::spawn_raw(|mut stream, _| async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            // The server preface (an empty SETTINGS frame), then, once the client's
            // first request is in, HEADERS on stream 1 (END_HEADERS) whose block is
            // an index no table has.
            if stream
                .write_all(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0])
                .await
                .is_err()
            {
                return;
            }
            let mut read = Vec::new();
            let mut buf = [0u8; 4096];
            while !holds_headers_frame(&read) {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => read.extend_from_slice(&buf[..n]),
                }
            }
            let headers = [0, 0, 4, 0x1, 0x4, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0x7f];
            let _ = stream.write_all(&headers).await;
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        });
        let cfg = yaml::config(
            &[yaml::listener("web", "app", &[])],
            &[yaml::cluster("app", &[up.addr], &["protocol: http2"])],
        );
        let server = TestServer::start(&cfg, Registry::default());
        let resp = client::get(server.addr("web"), "/", &[]).await;
        assert_eq!(resp.status, 502, "{}", resp.text());
        assert_eq!(
            resp.header("x-proxy-error"),
            Some("upstream_protocol_error")
        );
    })
    .await;
}

/// Whether the bytes a client sent (its 24-byte preface, then frames) hold a whole
/// HEADERS frame.
fn holds_headers_frame(bytes: &[u8]) -> bool {
    let mut at = 24;
    while let Some(header) = bytes.get(at..at + 9) {
        let length =
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        if bytes.len() < at + 9 + length {
            return false;
        }
        if header[3] == 0x1 {
            return true;
        }
        at += 9 + length;
    }
    false
}
