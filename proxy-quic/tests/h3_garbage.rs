//! Bad input on real sockets: raw QUIC streams with garbage, truncated frames,
//! frames out of place and absurd lengths are sent to an `H3Listener`; no task
//! panics (a panic hook counts them), the listener keeps serving, and a proper
//! HTTP/3 client is answered afterwards.

// Test code: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used)]

use crate::h3_support;

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use h3_support::{proxy_to_echo, Client, Tls, TEST_TIMEOUT};
use proxy_test_support::with_timeout;

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// xorshift64*: reproducible bytes without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = (self.next() as usize) % (max + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// What one stream carries: a class of bad input, then random bytes.
fn payload(case: u64, rng: &mut Rng) -> (bool, Vec<u8>) {
    let mut tail = rng.bytes(300);
    let (bidi, mut head) = match case % 8 {
        // Random bytes on a request stream.
        0 => (true, vec![]),
        // A HEADERS frame of garbage QPACK.
        1 => (true, vec![0x01, 0x20]),
        // DATA before HEADERS.
        2 => (true, vec![0x00, 0x05, b'h', b'e', b'l', b'l', b'o']),
        // A frame length of 2^62 - 1 with a few bytes.
        3 => (
            true,
            vec![0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ),
        // A SETTINGS frame on a request stream.
        4 => (true, vec![0x04, 0x00]),
        // A second control stream, then garbage frames.
        5 => (false, vec![0x00]),
        // QPACK encoder and decoder streams with garbage instructions.
        6 => (false, vec![0x02]),
        // A push stream from a client (not allowed), or an unknown stream type.
        _ => (
            false,
            vec![if rng.next().is_multiple_of(2) {
                0x01
            } else {
                0x21
            }],
        ),
    };
    head.append(&mut tail);
    (bidi, head)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_quic_streams_never_panics_and_the_listener_goes_on() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    with_timeout(TEST_TIMEOUT, async {
        let tls = Tls::new();
        let (up, server) = proxy_to_echo(&tls);
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut closed_by_server = 0;
        for conn_n in 0..24u64 {
            let conn = endpoint
                .connect_with(tls.client.clone(), server.addr, "localhost")
                .unwrap()
                .await
                .unwrap();
            for stream_n in 0..4 {
                let (bidi, bytes) = payload(conn_n * 4 + stream_n, &mut rng);
                let sent = async {
                    let mut send = if bidi {
                        conn.open_bi().await?.0
                    } else {
                        conn.open_uni().await?
                    };
                    send.write_all(&bytes).await?;
                    send.finish()?;
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
                };
                // The server may close the connection at the first bad frame.
                if sent.await.is_err() {
                    break;
                }
            }
            // The server closes the connection with an HTTP/3 error code (or ignores
            // what it may ignore, an unknown stream type).
            let closed = tokio::time::timeout(Duration::from_millis(300), conn.closed()).await;
            if let Ok(quinn::ConnectionError::ApplicationClosed(close)) = closed {
                let code = close.error_code.into_inner();
                assert!(
                    (0x100..=0x110).contains(&code) || (0x200..=0x202).contains(&code),
                    "{close:?}"
                );
                closed_by_server += 1;
            }
            conn.close(0u32.into(), b"done");
        }
        assert!(
            closed_by_server >= 12,
            "{closed_by_server} of 24 connections closed by the server"
        );
        let mut client = Client::connect(server.addr, tls.client.clone()).await;
        let a = client.get(server.addr, "/after-garbage").await.unwrap();
        assert_eq!(a.status(), 200);
        assert_eq!(up.hits(), 1, "garbage reached the upstream");
        assert!(server.stats().handshakes >= 25);
        drop(client);
        server.stop().await.unwrap();
    })
    .await;
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a task panicked");
}
