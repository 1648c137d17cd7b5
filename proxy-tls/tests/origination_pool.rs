//! Pooled TLS upstream connections: one the upstream closed while it sat idle (its
//! `close_notify` and FIN arrived meanwhile) is not taken for the next request.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use common::registry;
use proxy_test_support::{client, pki::Pki, upstream::read_request, yaml, TestServer};
use tokio::io::AsyncWriteExt;

/// A TLS upstream that answers each connection's one request with a keep-alive answer
/// (no `Connection: close`) and then closes the connection, as an upstream whose
/// keep-alive timeout is shorter than the proxy's does. Counts its connections.
async fn answers_once_then_closes(pki: &Pki) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let acceptor = pki.server("up", &["up.test"]).tls_acceptor();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if read_request(&mut tls).await.is_none() {
                    return;
                }
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                // `close_notify`, then FIN.
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, connections)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_connection_the_upstream_closed_while_idle_is_not_used_again() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let pki = Pki::new("pool-close");
        let (up, connections) = answers_once_then_closes(&pki).await;
        let cfg = yaml::config(
            &[yaml::listener("web", "secure", &[])],
            &[yaml::cluster(
                "secure",
                &[up],
                &[&format!(
                    "transport:\n      typed: tls\n      config: {{ server_name: up.test, roots: {{ files: [{}] }} }}",
                    pki.ca_pem.display()
                )],
            )],
        );
        let runtime = proxy_tls::TlsRuntime::default();
        let server = TestServer::start(&cfg, registry(runtime));
        let addr = server.addr("web");
        let first = client::get(addr, "/", &[]).await;
        assert_eq!(first.status, 200, "{}", first.text());
        // The upstream's close reaches the proxy while its connection is idle.
        tokio::time::sleep(Duration::from_millis(200)).await;
        // A streamed body cannot be sent twice: had the closed connection been
        // taken, this would fail with a 502 rather than be retried.
        let answer = client::raw::exchange(
            addr,
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            Duration::from_millis(500),
        )
        .await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert_eq!(connections.load(Ordering::SeqCst), 2, "one connection per request");
    })
    .await
    .unwrap();
}
