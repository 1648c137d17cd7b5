//! QUIC streams proxied to TCP on real sockets (127.0.0.1): a quinn client (and
//! PyPI's aioquic, when installed) opens bidirectional streams through a
//! `StreamProxy` to TCP servers written here: echoes, half-close both ways, the
//! per-connection stream bound, the idle timeout, a refused upstream, a wrong
//! ALPN, a drain, and the byte counts.

// Test code: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used)]

use crate::aioquic_support;

use std::{net::SocketAddr, num::NonZeroU32, sync::Arc, time::Duration};

use aioquic_support::{json_lines, Aioquic};
use proxy_core::cluster::Cluster;
use proxy_core::metrics::RenderMetrics;
use proxy_quic::stream_proxy::{codes, StreamProxyBuilder, StreamProxyMetrics, StreamProxyStats};
use proxy_test_support::{pki::Pki, with_timeout};
use quinn::{ReadError, VarInt};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::mpsc,
};

const ALPN: &[u8] = b"x-stream-test";
const TIMEOUT: Duration = Duration::from_secs(30);

/// A TCP echo server: echoes until EOF, then shuts its write side. Sends each
/// connection's byte count on `closed` when the client's side ended.
async fn echo_server() -> (SocketAddr, mpsc::UnboundedReceiver<u64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let n = tokio::io::copy(&mut r, &mut w).await.unwrap_or(0);
                let _ = w.shutdown().await;
                let _ = tx.send(n);
            });
        }
    });
    (addr, rx)
}

struct Proxy {
    addr: SocketAddr,
    stats: Arc<StreamProxyStats>,
    pki: Pki,
}

fn proxy(upstream: SocketAddr, idle: Duration, streams: u32) -> Proxy {
    proxy_until(upstream, idle, streams, None, std::future::pending()).0
}

/// A proxy that drains when `shutdown` resolves; the handle ends when it stopped.
fn proxy_until(
    upstream: SocketAddr,
    idle: Duration,
    streams: u32,
    connections: Option<u32>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> (Proxy, tokio::task::JoinHandle<()>) {
    let pki = Pki::new("stream-to-tcp");
    let issued = pki.server("server", &["localhost"]);
    let tls = proxy_quic::h3::server_config(issued.cert_pem.as_bytes(), issued.key_pem.as_bytes())
        .unwrap();
    let cluster = Cluster::builder("backend")
        .endpoint(upstream)
        .connect_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let proxy = StreamProxyBuilder::new("streams", tls, cluster)
        .alpn([ALPN.to_vec()])
        .idle_timeout(idle)
        .max_concurrent_streams(NonZeroU32::new(streams).unwrap())
        .max_connections(connections.and_then(NonZeroU32::new))
        .bind("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let (addr, stats) = (proxy.local_addr(), proxy.stats());
    let served = tokio::spawn(proxy.serve(shutdown));
    (Proxy { addr, stats, pki }, served)
}

async fn connect(proxy: &Proxy, alpn: &[u8]) -> Result<quinn::Connection, quinn::ConnectionError> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(&proxy.pki.ca_pem).unwrap();
    for cert in rustls_pemfile_certs(&ca) {
        roots.add(cert).unwrap();
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    let config = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
    ));
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(config);
    endpoint.connect(proxy.addr, "localhost").unwrap().await
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .map(Result::unwrap)
        .collect()
}

/// Waits until `f` holds, at most five seconds.
async fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_echo_through_the_proxy_with_half_close_and_byte_counts() {
    with_timeout(TIMEOUT, async {
        let (echo, mut closed) = echo_server().await;
        let p = proxy(echo, Duration::from_secs(30), 4);
        let conn = connect(&p, ALPN).await.unwrap();
        // Eight streams at once over a limit of four: each sends two chunks, then
        // its FIN (half-close), and reads the whole echo and the upstream's FIN.
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let conn = conn.clone();
                tokio::spawn(async move {
                    let (mut send, mut recv) = conn.open_bi().await.unwrap();
                    let data = format!("stream {i}: {}", "x".repeat(1000 * i));
                    let (a, b) = data.as_bytes().split_at(data.len() / 2);
                    send.write_all(a).await.unwrap();
                    send.write_all(b).await.unwrap();
                    send.finish().unwrap();
                    let echoed = recv.read_to_end(64 * 1024).await.unwrap();
                    assert_eq!(echoed, data.as_bytes(), "stream {i}");
                    data.len() as u64
                })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        let mut upstream_total = 0;
        for _ in 0..8 {
            upstream_total += closed.recv().await.unwrap();
        }
        assert_eq!(upstream_total, total);
        eventually("streams done", || p.stats.snapshot().streams_active == 0).await;
        let s = p.stats.snapshot();
        assert_eq!((s.handshakes, s.streams), (1, 8), "{s:?}");
        assert_eq!((s.bytes_up, s.bytes_down), (total, total), "{s:?}");
        assert_eq!(
            s.connect_failures + s.idle_timeouts + s.upstream_errors,
            0,
            "{s:?}"
        );
        let mut page = String::new();
        StreamProxyMetrics::new("streams", p.stats.clone()).render(&mut page);
        let up = format!(
            r#"proxy_quic_stream_bytes_total{{listener="streams",direction="up"}} {total}"#
        );
        assert!(page.lines().any(|l| l == up), "{up} not in\n{page}");

        // The bound: four streams held open, a fifth waits for credit until one
        // of them ends.
        let mut held = Vec::new();
        for i in 0..4u8 {
            let (mut send, recv) = conn.open_bi().await.unwrap();
            send.write_all(&[i]).await.unwrap();
            held.push((send, recv));
        }
        eventually("four streams proxied", || {
            p.stats.snapshot().streams_active == 4
        })
        .await;
        let fifth = tokio::time::timeout(Duration::from_millis(300), conn.open_bi()).await;
        assert!(fifth.is_err(), "a fifth stream opened past the limit");
        let (mut send, mut recv) = held.remove(0);
        send.finish().unwrap();
        assert_eq!(recv.read_to_end(16).await.unwrap(), [0]);
        let (mut send, mut recv) = tokio::time::timeout(Duration::from_secs(5), conn.open_bi())
            .await
            .expect("a stream ended: credit for another")
            .unwrap();
        send.write_all(b"fifth").await.unwrap();
        send.finish().unwrap();
        assert_eq!(recv.read_to_end(16).await.unwrap(), b"fifth");
        conn.close(0u32.into(), b"done");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_closing_first_finishes_the_stream_while_the_client_still_sends() {
    with_timeout(TIMEOUT, async {
        // A server that greets, shuts its write side at once, then reads all.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"hello").await.unwrap();
            s.shutdown().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            tx.send(got).unwrap();
        });
        let p = proxy(addr, Duration::from_secs(30), 4);
        let conn = connect(&p, ALPN).await.unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(b"first ").await.unwrap();
        // The greeting and the upstream's FIN, while our side is still open.
        assert_eq!(recv.read_to_end(64).await.unwrap(), b"hello");
        send.write_all(b"and late").await.unwrap();
        send.finish().unwrap();
        assert_eq!(rx.recv().await.unwrap(), b"first and late");
        eventually("stream done", || p.stats.snapshot().streams_active == 0).await;
        let s = p.stats.snapshot();
        assert_eq!((s.bytes_up, s.bytes_down), (14, 5), "{s:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_stream_is_reset_after_its_idle_timeout() {
    with_timeout(TIMEOUT, async {
        let (echo, mut closed) = echo_server().await;
        let p = proxy(echo, Duration::from_millis(300), 4);
        let conn = connect(&p, ALPN).await.unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(b"ping").await.unwrap();
        let mut buf = [0; 4];
        recv.read_exact(&mut buf).await.unwrap();
        let quiet = std::time::Instant::now();
        // Silence: the proxy resets the stream and closes the upstream connection.
        let mut rest = [0; 16];
        let err = recv.read(&mut rest).await.unwrap_err();
        assert_eq!(err, ReadError::Reset(VarInt::from_u32(codes::IDLE_TIMEOUT)));
        assert!(
            quiet.elapsed() >= Duration::from_millis(250),
            "{:?}",
            quiet.elapsed()
        );
        assert_eq!(
            closed.recv().await.unwrap(),
            4,
            "the upstream saw its connection end"
        );
        let s = p.stats.snapshot();
        assert_eq!(
            (s.idle_timeouts, s.bytes_up, s.bytes_down),
            (1, 4, 4),
            "{s:?}"
        );
        // The connection itself goes on.
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(b"again").await.unwrap();
        send.finish().unwrap();
        assert_eq!(recv.read_to_end(16).await.unwrap(), b"again");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upstream_resets_the_stream_and_a_wrong_alpn_fails_the_handshake() {
    with_timeout(TIMEOUT, async {
        let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = gone.local_addr().unwrap();
        drop(gone);
        let p = proxy(addr, Duration::from_secs(30), 4);
        let conn = connect(&p, ALPN).await.unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(b"anyone?").await.unwrap();
        let err = recv.read_to_end(16).await.unwrap_err();
        assert!(
            matches!(err, quinn::ReadToEndError::Read(ReadError::Reset(code))
                if code == VarInt::from_u32(codes::CONNECT_FAILED)),
            "{err:?}"
        );
        let s = p.stats.snapshot();
        assert_eq!((s.streams, s.connect_failures), (1, 1), "{s:?}");

        assert!(
            connect(&p, b"h3").await.is_err(),
            "a wrong ALPN was accepted"
        );
        eventually("handshake failure counted", || {
            p.stats.snapshot().handshake_failures == 1
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aioquic_raw_streams_through_the_proxy_to_a_tcp_echo() {
    let Some(aioquic) = Aioquic::find("the aioquic raw QUIC stream test") else {
        return;
    };
    with_timeout(TIMEOUT, async move {
        let (echo, _closed) = echo_server().await;
        let p = proxy(echo, Duration::from_secs(30), 4);
        let args = vec![
            "--port".into(),
            p.addr.port().to_string(),
            "--alpn".into(),
            String::from_utf8(ALPN.to_vec()).unwrap(),
            "--ca".into(),
            p.pki.ca_pem.display().to_string(),
        ];
        let out = aioquic
            .run("stream_client.py", args, Duration::from_secs(20))
            .await;
        assert!(out.ok(), "aioquic client failed:\n{}", out.text());
        let answers = json_lines(&out);
        assert_eq!(answers.len(), 3, "{}", out.text());
        let mut total = 0;
        for a in &answers {
            assert_eq!(a["echoed"], a["sent"], "{a}");
            assert_eq!(a["ended"], true, "{a}");
            total += a["sent"].as_str().unwrap().len() as u64;
        }
        eventually("streams done", || p.stats.snapshot().streams_active == 0).await;
        let s = p.stats.snapshot();
        assert_eq!(
            (s.streams, s.bytes_up, s.bytes_down),
            (3, total, total),
            "{s:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_lets_a_stream_in_flight_finish_and_refuses_new_connections() {
    with_timeout(TIMEOUT, async {
        let (echo, _closed) = echo_server().await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (p, served) = proxy_until(echo, Duration::from_secs(30), 4, None, async {
            let _ = stopped.await;
        });
        let conn = connect(&p, ALPN).await.unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(b"before ").await.unwrap();
        eventually("stream proxied", || p.stats.snapshot().streams_active == 1).await;
        stop.send(()).unwrap();
        // A handshake after the drain began fails: the endpoint takes none.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(500), connect(&p, ALPN))
                .await
                .map_or(true, |r| r.is_err()),
            "a connection was accepted during the drain"
        );
        // The stream in flight still goes both ways and ends normally.
        send.write_all(b"and during the drain").await.unwrap();
        send.finish().unwrap();
        let echoed = recv.read_to_end(64).await;
        assert_eq!(
            echoed.as_deref().map_err(|e| e.to_string()),
            Ok(&b"before and during the drain"[..]),
            "{:?} {:?} served: {}",
            p.stats.snapshot(),
            conn.close_reason(),
            served.is_finished()
        );
        served.await.unwrap();
        assert_eq!(p.stats.snapshot().connections_active, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_refused() {
    with_timeout(TIMEOUT, async {
        let (echo, _closed) = echo_server().await;
        let (p, _served) = proxy_until(
            echo,
            Duration::from_secs(30),
            4,
            Some(1),
            std::future::pending(),
        );
        let first = connect(&p, ALPN).await.unwrap();
        let err = connect(&p, ALPN).await.unwrap_err();
        assert_eq!(
            err,
            quinn::ConnectionError::ConnectionClosed(quinn_proto::ConnectionClose {
                error_code: quinn_proto::TransportErrorCode::CONNECTION_REFUSED,
                frame_type: None,
                reason: Default::default(),
            })
        );
        assert_eq!(p.stats.snapshot().connections_refused, 1);
        // The first one still serves; once it closed, a new one is let in.
        let (mut send, mut recv) = first.open_bi().await.unwrap();
        send.write_all(b"one").await.unwrap();
        send.finish().unwrap();
        assert_eq!(recv.read_to_end(16).await.unwrap(), b"one");
        first.close(0u32.into(), b"bye");
        eventually("the first connection gone", || {
            p.stats.snapshot().connections_active == 0
        })
        .await;
        // (Its task is reaped at the next accept: allow a retry.)
        let mut again = connect(&p, ALPN).await;
        for _ in 0..10 {
            if again.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            again = connect(&p, ALPN).await;
        }
        assert!(again.is_ok(), "{again:?}");
    })
    .await;
}

/// Counts the connect failures the cluster hears of.
#[derive(Debug, Default)]
struct ConnectFailures(std::sync::atomic::AtomicU64);

impl proxy_core::cluster::ClusterExtension for ConnectFailures {
    fn on_outcome(
        &self,
        _endpoint: &Arc<proxy_core::Endpoint>,
        outcome: &proxy_core::cluster::Outcome,
        _latency: Duration,
    ) {
        if matches!(outcome, proxy_core::cluster::Outcome::ConnectFailure) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_hears_of_connect_failures() {
    with_timeout(TIMEOUT, async {
        let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = gone.local_addr().unwrap();
        drop(gone);
        let failures = Arc::new(ConnectFailures::default());
        let cluster = Cluster::builder("backend")
            .endpoint(addr)
            .extension(failures.clone())
            .build()
            .unwrap();
        let pki = Pki::new("stream-to-tcp");
        let issued = pki.server("server", &["localhost"]);
        let tls =
            proxy_quic::h3::server_config(issued.cert_pem.as_bytes(), issued.key_pem.as_bytes())
                .unwrap();
        let proxy = StreamProxyBuilder::new("streams", tls, cluster)
            .alpn([ALPN.to_vec()])
            .bind("127.0.0.1:0".parse().unwrap())
            .unwrap();
        let p = Proxy {
            addr: proxy.local_addr(),
            stats: proxy.stats(),
            pki,
        };
        tokio::spawn(proxy.serve(std::future::pending()));
        let conn = connect(&p, ALPN).await.unwrap();
        for _ in 0..2 {
            let (mut send, mut recv) = conn.open_bi().await.unwrap();
            send.write_all(b"x").await.unwrap();
            assert!(recv.read_to_end(16).await.is_err());
        }
        assert_eq!(failures.0.load(std::sync::atomic::Ordering::Relaxed), 2);
        assert_eq!(p.stats.snapshot().connect_failures, 2);
    })
    .await;
}
