//! `Upgrade: websocket` through the sidecar: the upstream's 101 reaches the client and
//! the tunnel then carries raw bytes both ways.

use crate::common;

use std::time::Duration;

use common::*;
use proxy_test_support::{client::raw, upstream::spawn_raw, with_timeout, Upstream};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Raw TCP: reads a request head, answers `101 Switching Protocols` (websocket),
/// writes `hello-from-upstream\n`, then echoes every byte back, counting them
/// ([`Upstream::bytes`]).
fn upgrade_echo() -> Upstream {
    spawn_raw(|mut s, stats| async move {
        let mut buf = Vec::new();
        let end = raw::read_until(&mut s, &mut buf, b"\r\n\r\n").await;
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        if !head.contains("upgrade: websocket") {
            let _ = s
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 10\r\nconnection: close\r\n\r\nno upgrade")
                .await;
            return;
        }
        let _ = s
            .write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
                  sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nhello-from-upstream\n",
            )
            .await;
        // Bytes that came with the head belong to the tunnel.
        if buf.len() > end && s.write_all(&buf[end..]).await.is_err() {
            return;
        }
        let mut chunk = [0u8; 8192];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    stats.add_bytes(n as u64);
                    if s.write_all(&chunk[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_tunnels_bytes_both_ways() {
    with_timeout(Duration::from_secs(30), async {
        let up = upgrade_echo();
        let mut cfg = ConfigBuilder::new()
            .routes(vec![route("ws", "/", "ws", "")])
            .cluster(cluster("ws", up.addr, ""));
        let _sc = Sidecar::start_with(&mut cfg).await;

        let mut s = TcpStream::connect(cfg.listen).await.expect("connect");
        let req = format!(
            "GET /chat HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            cfg.listen
        );
        s.write_all(req.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        let head_end = raw::read_until(&mut s, &mut buf, b"\r\n\r\n").await;
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        assert!(
            head.starts_with("http/1.1 101"),
            "101 Switching Protocols passes through: {head:?}"
        );
        assert!(
            head.contains("upgrade: websocket"),
            "Upgrade header in the 101: {head:?}"
        );

        // Upstream -> client: the greeting the upstream wrote after its 101.
        let mut tunnel = buf[head_end..].to_vec();
        while !tunnel.ends_with(b"hello-from-upstream\n") {
            let mut chunk = [0u8; 1024];
            let n = s.read(&mut chunk).await.expect("read greeting");
            assert!(
                n > 0,
                "tunnel closed before the upstream greeting: {:?}",
                String::from_utf8_lossy(&tunnel)
            );
            tunnel.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(tunnel, b"hello-from-upstream\n");

        // Client -> upstream -> client, several rounds and a larger burst.
        for msg in [
            &b"ping-1"[..],
            b"second message",
            &[0u8, 1, 2, 255, 254][..],
        ] {
            s.write_all(msg).await.expect("write");
            let mut back = vec![0u8; msg.len()];
            s.read_exact(&mut back).await.expect("read echo");
            assert_eq!(back, msg, "echo through the tunnel");
        }
        let burst: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 251) as u8).collect();
        let (mut rd, mut wr) = s.into_split();
        let to_send = burst.clone();
        let writer = tokio::spawn(async move {
            wr.write_all(&to_send).await.expect("write burst");
            wr
        });
        let mut back = vec![0u8; burst.len()];
        rd.read_exact(&mut back).await.expect("read burst");
        assert!(back == burst, "256 KiB burst echoed intact");
        let _wr = writer.await.expect("writer");
        assert!(up.bytes() >= burst.len() as u64);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_refused_by_upstream_is_a_normal_response() {
    with_timeout(Duration::from_secs(30), async {
        let up = upgrade_echo();
        let mut cfg = ConfigBuilder::new()
            .routes(vec![route("ws", "/", "ws", "")])
            .cluster(cluster("ws", up.addr, ""));
        let _sc = Sidecar::start_with(&mut cfg).await;
        // Upgrade to something the upstream refuses: its 400 reaches the client.
        let raw = raw::exchange(
            cfg.listen,
            format!(
                "GET / HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n",
                cfg.listen
            )
            .as_bytes(),
            Duration::from_secs(3),
        )
        .await;
        let text = String::from_utf8_lossy(&raw);
        assert!(
            text.starts_with("HTTP/1.1 400"),
            "the upstream's refusal passes: {text:?}"
        );
    })
    .await;
}
