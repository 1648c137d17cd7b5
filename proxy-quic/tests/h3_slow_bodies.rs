//! The slow-body defence over HTTP/3, with the h3 crate's client: a small request
//! body of declared length is read whole before any upstream connection is opened,
//! and one that stops arriving is answered 408 without the upstream hearing of it; a
//! longer one streams, and a trickle of it is answered 408 once it falls behind the
//! minimum rate.

// Test code: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used)]

use crate::h3_support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use h3_support::{proxy_stack_with_body_buffer, request, Client, Running, Tls, TEST_TIMEOUT};
use proxy_core::proxy::BodyBuffer;
use proxy_quic::h3::H3Listener;
use proxy_test_support::{with_timeout, Upstream};

/// Bodies up to 1 KiB read whole within a second; longer ones at 1 KiB a second
/// after that second.
fn buffer() -> BodyBuffer {
    BodyBuffer::new(1024, Duration::from_secs(1)).with_min_rate(1024)
}

/// An echo upstream, an HTTP/3 listener proxying to it with [`buffer`], and a client
/// connected to the listener.
async fn start() -> (Upstream, Running, Client) {
    let up = Upstream::echo("e");
    let tls = Tls::new();
    let stack = proxy_stack_with_body_buffer(up.addr, buffer());
    let server = Running::start(H3Listener::builder("h3", tls.server()), stack);
    let client = Client::connect(server.addr, tls.client.clone()).await;
    (up, server, client)
}

/// A POST of `length` declared bytes to the server, its stream left open.
async fn post(
    client: &mut Client,
    server: std::net::SocketAddr,
    length: usize,
) -> h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes> {
    let mut req = request("POST", server, "/slow");
    req.headers_mut()
        .insert("content-length", length.to_string().parse().unwrap());
    client.send.send_request(req).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_body_sent_slowly_reaches_the_upstream_only_whole() {
    with_timeout(TEST_TIMEOUT, async {
        let (up, server, mut client) = start().await;
        let mut stream = post(&mut client, server.addr, 10).await;
        stream
            .send_data(Bytes::from_static(b"12345"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(up.connections(), 0, "an upstream connection was opened");
        stream
            .send_data(Bytes::from_static(b"67890"))
            .await
            .unwrap();
        h3_support::finish(&mut stream).await.unwrap();
        let head = stream.recv_response().await.unwrap();
        assert_eq!(head.status(), 200);
        let seen = up.requests();
        assert_eq!(seen.len(), 1);
        assert_eq!(&seen[0].body[..], b"1234567890");
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_body_that_stops_arriving_is_a_408_and_never_goes_upstream() {
    with_timeout(TEST_TIMEOUT, async {
        let (up, server, mut client) = start().await;
        let mut stream = post(&mut client, server.addr, 1000).await;
        stream
            .send_data(Bytes::from(vec![b'a'; 100]))
            .await
            .unwrap();
        let started = Instant::now();
        let head = stream.recv_response().await.unwrap();
        assert_eq!(head.status(), 408);
        assert_eq!(head.headers()["x-proxy-error"], "request_timeout");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(up.connections(), 0);
        // The connection's other requests go on.
        let answer = client.get(server.addr, "/next").await.unwrap();
        assert_eq!(answer.status(), 200);
        drop(stream);
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_trickled_is_a_408_within_seconds() {
    with_timeout(TEST_TIMEOUT, async {
        let (up, server, mut client) = start().await;
        let mut stream = post(&mut client, server.addr, 1_000_000).await;
        stream
            .send_data(Bytes::from(vec![b'a'; 2048]))
            .await
            .unwrap();
        let started = Instant::now();
        // Ten bytes every 100 ms: a tenth of the rate. The stream is split so that the
        // answer can be read while the trickle goes on.
        let (mut send, mut recv) = stream.split();
        let trickle = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if send
                    .send_data(Bytes::from_static(b"aaaaaaaaaa"))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        let head = recv.recv_response().await.unwrap();
        assert_eq!(head.status(), 408);
        assert_eq!(head.headers()["x-proxy-error"], "request_timeout");
        // The grace (1 s) and what 2 KiB earn (2 s); the stream idle timeout (60 s by
        // default) would never be reached by the trickle.
        assert!(started.elapsed() < Duration::from_secs(8));
        // The body went upstream as it arrived.
        assert_eq!(up.connections(), 1);
        trickle.abort();
        let answer = client.get(server.addr, "/next").await.unwrap();
        assert_eq!(answer.status(), 200);
        server.stop().await.unwrap();
    })
    .await;
}
