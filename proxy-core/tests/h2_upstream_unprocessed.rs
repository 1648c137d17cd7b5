//! An HTTP/2 upstream that turns requests away unprocessed (RFC 9113 8.7), on real
//! sockets: one that goes away after a few streams (as nginx does after
//! `keepalive_requests`), with requests waiting for a stream under its stream limit
//! or not, one that refuses streams with REFUSED_STREAM, and one that goes away with
//! an error code, naming the last stream it processed. Every request is answered,
//! each processed by the upstream exactly once; one whose body streamed through
//! cannot be sent again and is answered 502, as is one refused on every try and one
//! on a stream the GOAWAY names as maybe processed.

use std::time::Duration;

use bytes::Bytes;
use proxy_core::Registry;
use proxy_test_support::{
    client,
    server::TestServer,
    timeout::with_timeout,
    upstream::{spawn_raw, Upstream},
    yaml,
};

/// How a test upstream treats the streams of each of its connections.
#[derive(Clone, Copy)]
enum Policy {
    /// Answers them, and goes away gracefully (GOAWAY, NO_ERROR) after this many.
    GoAwayAfter(usize),
    /// Answers them, but refuses every this-many-th with REFUSED_STREAM.
    RefuseEvery(usize),
}

/// An HTTP/2 upstream that answers `200 ok`, after `delay`, to the streams `policy`
/// lets through, at most `stream_limit` at a time on a connection; its hits count
/// the requests it processed.
fn h2_upstream(policy: Policy, delay: Duration, stream_limit: u32) -> Upstream {
    spawn_raw(move |tcp, stats| async move {
        let handshake = h2::server::Builder::new()
            .max_concurrent_streams(stream_limit)
            .handshake(tcp);
        let Ok(mut conn) = handshake.await else {
            return;
        };
        let mut seen = 0;
        while let Some(Ok((_req, mut respond))) = conn.accept().await {
            seen += 1;
            if let Policy::RefuseEvery(n) = policy {
                if seen % n == 0 {
                    respond.send_reset(h2::Reason::REFUSED_STREAM);
                    continue;
                }
            }
            stats.hit();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                answer_ok(&mut respond);
            });
            if matches!(policy, Policy::GoAwayAfter(n) if seen == n) {
                conn.graceful_shutdown();
            }
        }
    })
}

/// Answers a stream `200 ok`.
fn answer_ok(respond: &mut h2::server::SendResponse<Bytes>) {
    if let Ok(mut body) = respond.send_response(http::Response::new(()), false) {
        let _ = body.send_data(Bytes::from_static(b"ok"), true);
    }
}

fn start(up: &Upstream) -> TestServer {
    let cfg = yaml::config(
        &[yaml::listener("web", "app", &[])],
        &[yaml::cluster("app", &[up.addr], &["protocol: http2"])],
    );
    TestServer::start(&cfg, Registry::default())
}

/// Sends `total` GETs, `concurrency` at a time, each on its own HTTP/1.1 connection;
/// their statuses.
async fn get_many(addr: std::net::SocketAddr, total: usize, concurrency: usize) -> Vec<u16> {
    client::many(total, concurrency, |_| async move {
        client::get(addr, "/", &[]).await.status.as_u16()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_an_upstream_going_away_did_not_process_go_on_a_new_connection() {
    with_timeout(Duration::from_secs(60), async {
        let up = h2_upstream(Policy::GoAwayAfter(10), Duration::from_millis(2), 100);
        let server = start(&up);
        let statuses = get_many(server.addr("web"), 200, 8).await;
        let failed: Vec<_> = statuses.iter().filter(|s| **s != 200).collect();
        assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
        assert_eq!(up.hits(), 200, "each request processed once");
        // A graceful shutdown still takes the streams that arrive before its last
        // GOAWAY, so a connection may serve more than 10.
        assert!(
            up.connections() >= 200 / 25,
            "the upstream went away every 10 streams or so: {} connections",
            up.connections()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_for_a_stream_when_the_upstream_goes_away_go_again() {
    with_timeout(Duration::from_secs(60), async {
        // Four streams at a time and 50 requests in flight: most wait for a stream, in
        // the client, when the upstream goes away after every 25, and some are
        // turned away many times in a row before they get one.
        let up = h2_upstream(Policy::GoAwayAfter(25), Duration::from_millis(1), 4);
        let server = start(&up);
        let statuses = get_many(server.addr("web"), 1000, 50).await;
        let failed: Vec<_> = statuses.iter().filter(|s| **s != 200).collect();
        assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
        assert_eq!(up.hits(), 1000, "each request processed once");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_stream_is_sent_again() {
    with_timeout(Duration::from_secs(60), async {
        let up = h2_upstream(Policy::RefuseEvery(3), Duration::ZERO, 100);
        let server = start(&up);
        let statuses = get_many(server.addr("web"), 60, 1).await;
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
        assert_eq!(up.hits(), 60, "each request processed once");
        assert_eq!(up.connections(), 1, "a refused stream keeps the connection");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_refused_every_time_or_streamed_is_answered_502() {
    with_timeout(Duration::from_secs(60), async {
        let up = h2_upstream(Policy::RefuseEvery(1), Duration::ZERO, 100);
        let server = start(&up);
        let addr = server.addr("web");
        // Chunked: the body streams through and cannot be sent again.
        let answer = client::raw::exchange(
            addr,
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
            Duration::from_secs(2),
        )
        .await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
        // Empty, it can be sent again: a few times, then given up.
        let resp = client::get(addr, "/", &[]).await;
        assert_eq!(resp.status, 502, "{}", resp.text());
        assert_eq!(up.hits(), 0, "the upstream processed nothing");
        assert_eq!(up.connections(), 1, "a refused stream keeps the connection");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_going_away_at_once_on_every_connection_is_given_up() {
    with_timeout(Duration::from_secs(60), async {
        // Its SETTINGS, then a GOAWAY (NO_ERROR) naming no stream processed, then
        // the connection closed: it never processes anything.
        let up = spawn_raw(|mut tcp, _| async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut preface = [0; 24];
            if tcp.read_exact(&mut preface).await.is_err() {
                return;
            }
            let settings = [0, 0, 0, 4, 0, 0, 0, 0, 0];
            let go_away = [0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            let _ = tcp.write_all(&[&settings[..], &go_away[..]].concat()).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        });
        let server = start(&up);
        let resp = client::get(server.addr("web"), "/", &[]).await;
        assert_eq!(resp.status, 502, "{}", resp.text());
        // A few tries, each on a new connection, not one per allowed resend.
        let tries = up.connections();
        assert!((2..=12).contains(&tries), "{tries} connections");
    })
    .await;
}

/// An HTTP/2 upstream whose first connection takes up to `gather` requests (waiting
/// at most 300 ms for more after the first), then sends a GOAWAY naming `last` as the
/// last stream it may have processed, with `reason`, and closes (the requests on
/// streams up to `last` counted as processed); the next connections answer `200 ok`.
fn going_away_with(last: u32, reason: h2::Reason, gather: usize) -> Upstream {
    let opened = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    spawn_raw(move |mut tcp, stats| {
        let first = opened.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            if !first {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    stats.hit();
                    answer_ok(&mut respond);
                }
                return;
            }
            let mut preface = [0; 24];
            if tcp.read_exact(&mut preface).await.is_err() {
                return;
            }
            let settings = [0, 0, 0, 4, 0, 0, 0, 0, 0];
            if tcp.write_all(&settings).await.is_err() {
                return;
            }
            // Frames until `gather` requests' HEADERS (type 1) came, or the wait for
            // more ran out.
            let mut streams = Vec::new();
            while streams.len() < gather {
                let mut header = [0u8; 9];
                let read = tcp.read_exact(&mut header);
                let header_read = if streams.is_empty() {
                    read.await.is_ok()
                } else {
                    matches!(
                        tokio::time::timeout(Duration::from_millis(300), read).await,
                        Ok(Ok(_))
                    )
                };
                if !header_read {
                    break;
                }
                let len = usize::from(header[0]) << 16
                    | usize::from(header[1]) << 8
                    | usize::from(header[2]);
                let mut payload = vec![0; len];
                if tcp.read_exact(&mut payload).await.is_err() {
                    return;
                }
                if header[3] == 1 {
                    streams.push(u32::from_be_bytes([
                        header[5], header[6], header[7], header[8],
                    ]));
                }
            }
            for _ in streams.iter().filter(|id| **id <= last) {
                stats.hit();
            }
            let mut go_away = vec![0, 0, 8, 7, 0, 0, 0, 0, 0];
            go_away.extend_from_slice(&last.to_be_bytes());
            go_away.extend_from_slice(&u32::from(reason).to_be_bytes());
            let _ = tcp.write_all(&go_away).await;
            // Closed after the proxy read it: what it still sends is read, so that
            // the close is not a reset that could overtake the GOAWAY.
            let _ = tcp.shutdown().await;
            let mut rest = [0u8; 1024];
            let drain = async { while matches!(tcp.read(&mut rest).await, Ok(n) if n > 0) {} };
            let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_above_the_last_stream_of_a_go_away_with_an_error_goes_again() {
    with_timeout(Duration::from_secs(60), async {
        for reason in [
            h2::Reason::INTERNAL_ERROR,
            h2::Reason::ENHANCE_YOUR_CALM,
            h2::Reason::NO_ERROR,
        ] {
            let up = going_away_with(0, reason, 1);
            let server = start(&up);
            let resp = client::get(server.addr("web"), "/", &[]).await;
            assert_eq!(resp.status, 200, "{reason:?}: {}", resp.text());
            assert_eq!(resp.text(), "ok");
            assert_eq!(up.hits(), 1, "{reason:?}: processed once");
            assert_eq!(up.connections(), 2, "{reason:?}: sent again on a new one");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_a_go_away_with_an_error_names_as_processed_is_not_sent_again() {
    with_timeout(Duration::from_secs(60), async {
        for reason in [h2::Reason::INTERNAL_ERROR, h2::Reason::NO_ERROR] {
            let up = going_away_with(1, reason, 1);
            let server = start(&up);
            let resp = client::get(server.addr("web"), "/", &[]).await;
            assert_eq!(resp.status, 502, "{reason:?}: {}", resp.text());
            assert_eq!(up.hits(), 1, "{reason:?}: processed once, not sent again");
            assert_eq!(up.connections(), 1, "{reason:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_requests_in_flight_when_an_upstream_goes_away_with_an_error_only_those_above_its_last_stream_go_again(
) {
    with_timeout(Duration::from_secs(60), async {
        // Three requests at once; the first connection takes those that come within
        // 300 ms and names the first (stream 1) as the last it may have processed.
        let up = going_away_with(1, h2::Reason::INTERNAL_ERROR, 3);
        let server = start(&up);
        let mut statuses = get_many(server.addr("web"), 3, 3).await;
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [200, 200, 502],
            "only stream 1 may have been processed"
        );
        assert_eq!(up.hits(), 3, "each request processed once");
    })
    .await;
}
