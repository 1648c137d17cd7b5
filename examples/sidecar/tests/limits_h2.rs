//! Protective limits of a listener for HTTP/2 (`limits:`): the advertised stream
//! limit, the rapid-reset defence (a flood of resets, and resets paced before each
//! answer) and the idle timeout of an HTTP/2 connection.

use crate::common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Method, StatusCode};
use proxy_test_support::{client, with_timeout};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(60);

/// An h2c client connection; the task resolves when the connection ends.
async fn h2_connect(
    addr: std::net::SocketAddr,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let (send, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    (send, tokio::spawn(conn))
}

/// One GET over h2; the status and body.
async fn h2_get(
    send: &h2::client::SendRequest<Bytes>,
    addr: std::net::SocketAddr,
    path: &str,
) -> Result<(StatusCode, Bytes), h2::Error> {
    let mut send = send.clone().ready().await?;
    let req = http::Request::get(format!("http://{addr}{path}"))
        .body(())
        .expect("request");
    let (resp, _) = send.send_request(req, true)?;
    let resp = resp.await?;
    let status = resp.status();
    let mut body = resp.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    Ok((status, data.into()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_settings_advertise_max_concurrent_streams() {
    with_timeout(LIMIT, async {
        let (_sc, _up, cfg) = limits_sidecar("h2_max_concurrent_streams: 7").await;
        let (send, _conn) = h2_connect(cfg.listen).await;
        // The server's SETTINGS have arrived once a first exchange is done.
        let (status, _) = h2_get(&send, cfg.listen, "/first").await.expect("h2 GET");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            send.current_max_send_streams(),
            7,
            "SETTINGS_MAX_CONCURRENT_STREAMS from h2_max_concurrent_streams"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_rapid_reset_flood_ends_the_connection() {
    with_timeout(LIMIT, async {
        let (sc, up, cfg) = limits_sidecar("h2_max_pending_reset_streams: 100").await;
        let (send, conn) = h2_connect(cfg.listen).await;
        let (status, _) = h2_get(&send, cfg.listen, "/before").await.expect("h2 GET");
        assert_eq!(status, StatusCode::OK);
        let before = up.hits();

        // Open a stream and reset it at once, 1,000 times.
        let mut opened = 0u32;
        let mut stopped = None;
        for i in 0..1000 {
            let mut s = match send.clone().ready().await {
                Ok(s) => s,
                Err(e) => {
                    stopped = Some(format!("ready failed after {i}: {e}"));
                    break;
                }
            };
            let req = http::Request::get(format!("http://{}/flood/{i}", cfg.listen))
                .header("x-echo-delay-ms", "200")
                .body(())
                .expect("request");
            match s.send_request(req, false) {
                Ok((_resp, mut stream)) => {
                    stream.send_reset(h2::Reason::CANCEL);
                    opened += 1;
                }
                Err(e) => {
                    stopped = Some(format!("send_request failed after {i}: {e}"));
                    break;
                }
            }
        }

        // The proxy ends the connection rather than keep working for the attacker.
        let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
        let worked = up.hits() - before;
        let outcome = match ended {
            Ok(Ok(Err(e))) if e.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM) => {
                format!("connection error: {e}")
            }
            // The proxy closed the socket while the client was still writing: the
            // GOAWAY may be lost to the reset, but the connection did end.
            Ok(Ok(Err(e))) if e.is_io() => format!("connection closed under the client: {e}"),
            Ok(Ok(Err(e))) => panic!(
                "the flood ended the connection with {e} (reason {:?}), not \
                 ENHANCE_YOUR_CALM; upstream got {worked}",
                e.reason()
            ),
            Ok(Ok(Ok(()))) => panic!(
                "the flood ended the connection cleanly, not with ENHANCE_YOUR_CALM; \
                 upstream got {worked}"
            ),
            Ok(Err(e)) => panic!("h2 connection task failed: {e}"),
            Err(_) => {
                let still = h2_get(&send, cfg.listen, "/still-open").await;
                panic!(
                    "the connection survived {opened} open+reset streams (still open 5 s \
                     later; a new request on it: {still:?}); the upstream got {worked} \
                     of the reset requests\n{}",
                    sc.logs()
                );
            }
        };
        eprintln!(
            "rapid reset: {opened} streams opened and reset; {outcome}; client stop: \
             {stopped:?}; upstream saw {worked} of them"
        );

        // A fresh client is served, over h2 and HTTP/1.1.
        let (fresh, _fresh_conn) = h2_connect(cfg.listen).await;
        let (status, _) = h2_get(&fresh, cfg.listen, "/after")
            .await
            .expect("h2 GET on a fresh connection");
        assert_eq!(status, StatusCode::OK);
        let r = client::request(cfg.listen, Method::GET, "/after-h1", &[], Bytes::new())
            .await
            .expect("HTTP/1.1 after the flood");
        assert_eq!(r.status, StatusCode::OK);
        assert!(sc.metrics().await.contains("proxy_listener_requests_total"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_paced_resets_before_the_answer_end_the_connection() {
    with_timeout(LIMIT, async {
        // The doc of h2_max_pending_reset_streams: streams reset by the client before
        // the proxy answered, tolerated per connection before it is closed. Here each
        // stream is reset a moment after it is opened, once the proxy has taken it
        // up, but long before the (slow) upstream answers.
        let (sc, up, cfg) = limits_sidecar("h2_max_pending_reset_streams: 20").await;
        let (send, conn) = h2_connect(cfg.listen).await;
        let mut opened = 0u32;
        for i in 0..200 {
            if conn.is_finished() {
                break;
            }
            let Ok(mut s) = send.clone().ready().await else {
                break;
            };
            let req = http::Request::get(format!("http://{}/paced/{i}", cfg.listen))
                .header("x-echo-delay-ms", "2000")
                .body(())
                .expect("request");
            let Ok((_resp, mut stream)) = s.send_request(req, true) else {
                break;
            };
            tokio::time::sleep(Duration::from_millis(5)).await;
            stream.send_reset(h2::Reason::CANCEL);
            opened += 1;
        }
        let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
        let worked = up.hits();
        assert!(
            ended.is_ok(),
            "the connection survived {opened} streams reset before their answer \
             (h2_max_pending_reset_streams 20); the upstream got {worked} of them\n{}",
            sc.logs()
        );
        eprintln!("paced resets: {opened} streams; ended {ended:?}; upstream saw {worked}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_h2_connection_is_closed() {
    with_timeout(LIMIT, async {
        let (sc, _up, cfg) = limits_sidecar("idle_timeout: 1s").await;
        let (send, conn) = h2_connect(cfg.listen).await;
        let (status, _) = h2_get(&send, cfg.listen, "/once").await.expect("h2 GET");
        assert_eq!(status, StatusCode::OK);
        let idle_since = Instant::now();
        let ended = tokio::time::timeout(Duration::from_secs(6), conn).await;
        let idle = idle_since.elapsed();
        assert!(
            ended.is_ok(),
            "an idle h2 connection is still open {idle:?} later (idle_timeout 1s)\n{}",
            sc.logs()
        );
        assert!(
            idle <= Duration::from_millis(3000),
            "closed after {idle:?} idle; at most 2 x idle_timeout (1s) plus slack"
        );
    })
    .await;
}
