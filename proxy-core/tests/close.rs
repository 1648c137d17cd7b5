//! Closing a connection loses no answer: after `connection: close` (or an error
//! answer), the proxy shuts its write side and drains what the client still sends,
//! instead of closing with unread input, which makes the kernel send a reset that can
//! destroy the answer before the client reads it.

use std::time::Duration;

use proxy_core::Registry;
use proxy_test_support::{server::TestServer, timeout::with_timeout, upstream::Upstream, yaml};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn answer_survives(addr: std::net::SocketAddr, head: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut bytes = head.to_vec();
    // Pipelined bytes the proxy will not read: more than its read buffer.
    bytes.extend(std::iter::repeat_n(b'x', 256 * 1024));
    s.write_all(&bytes).await.expect("write");
    // The client is slow to read: the proxy has answered and closed by now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut out = Vec::new();
    let read = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(
        read.is_ok(),
        "the connection was reset ({read:?}) after {text:?}"
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closing_connection_is_not_reset_under_unread_input() {
    with_timeout(Duration::from_secs(60), async {
        let up = Upstream::named("up");
        let cfg = yaml::config(
            &[yaml::listener("web", "app", &[])],
            &[yaml::cluster("app", &[up.addr], &[])],
        );
        let server = TestServer::start(&cfg, Registry::default());
        let addr = server.addr("web");

        let ok = answer_survives(
            addr,
            b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(ok.starts_with("HTTP/1.1 200") && ok.ends_with("up"), "{ok}");

        // An error answer (a malformed head) is not lost either.
        let bad = answer_survives(addr, b"GET / HTTP/1.1\r\nhost: a\r\nbad header\r\n\r\n").await;
        assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    })
    .await;
}
