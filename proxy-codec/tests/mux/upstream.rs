//! The upstream side: `RpcUpstream` clients against in-process Bolt upstreams on
//! 127.0.0.1 (the Dubbo upstream is `dubbo_upstream.rs`).

use std::{
    collections::HashSet,
    num::NonZeroU32,
    sync::{atomic::Ordering, Arc, Mutex},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use proxy_codec::{
    bolt::{self, BoltFrame, BoltRequestInfo, BoltVersion},
    config::UpstreamOptions,
    metrics::CodecMetrics,
    Bolt, Protocol, RpcUpstream,
};
use proxy_core::{HttpRequest, HttpResponse, ProxyError};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
    time::timeout,
};

use super::{heartbeat, read_frame, request, LIMIT};

/// What an in-process Bolt upstream saw.
#[derive(Default)]
struct Seen {
    /// (connection number, request id) of every request.
    ids: Vec<(usize, u32)>,
    /// Heartbeats received.
    heartbeats: usize,
}

/// A Bolt upstream: answers `<ms>:<text>` with `up <text>` after `<ms>`; `die` closes
/// the connection after 50 ms; `hang` is never answered; `stray` is preceded by an
/// answer to an id nobody asked for; `ping` makes it send a heartbeat first.
async fn bolt_upstream() -> (std::net::SocketAddr, Arc<Mutex<Seen>>) {
    bolt_upstream_answering_heartbeats(true).await
}

async fn bolt_upstream_answering_heartbeats(
    answer_pings: bool,
) -> (std::net::SocketAddr, Arc<Mutex<Seen>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((s, _)) = l.accept().await {
            n += 1;
            tokio::spawn(upstream_conn(n, s, seen2.clone(), answer_pings));
        }
    });
    (addr, seen)
}

async fn upstream_conn(conn: usize, s: TcpStream, seen: Arc<Mutex<Seen>>, answer_pings: bool) {
    let (mut rd, wr) = s.into_split();
    let wr = Arc::new(tokio::sync::Mutex::new(wr));
    let mut buf = BytesMut::new();
    while let Some(f) = read_frame(&Bolt, &mut rd, &mut buf).await {
        if f.cmd_code == bolt::CMD_HEARTBEAT {
            seen.lock().unwrap().heartbeats += 1;
            if answer_pings {
                let mut out = BytesMut::new();
                Bolt.encode(&Bolt.heartbeat_reply(&f), &mut out).unwrap();
                let _ = wr.lock().await.write_all(&out).await;
            }
            continue;
        }
        seen.lock().unwrap().ids.push((conn, f.request_id));
        let text = String::from_utf8(f.content.to_vec()).unwrap();
        let wr = wr.clone();
        if text == "die" {
            tokio::time::sleep(Duration::from_millis(50)).await;
            return;
        }
        tokio::spawn(async move {
            let (ms, body) = text.split_once(':').unwrap_or(("0", &text));
            if body == "hang" {
                return;
            }
            let mut out = BytesMut::new();
            if body == "stray" {
                Bolt.encode(&answer(&f, 9999, "stray"), &mut out).unwrap();
            }
            if body == "ping" {
                Bolt.encode(&heartbeat(424242), &mut out).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
            Bolt.encode(&answer(&f, f.request_id, &format!("up {body}")), &mut out)
                .unwrap();
            let _ = wr.lock().await.write_all(&out).await;
        });
    }
}

fn answer(req: &BoltFrame, id: u32, text: &str) -> BoltFrame {
    BoltFrame {
        rpc_type: bolt::TYPE_RESPONSE,
        cmd_code: bolt::CMD_RESPONSE,
        request_id: id,
        timeout: 0,
        status: bolt::status::SUCCESS,
        class_name: Bytes::from_static(bolt::SOFA_RESPONSE.as_bytes()),
        header: Bytes::new(),
        content: Bytes::from(text.to_owned()),
        ..req.clone()
    }
}

/// A request as the downstream side makes it, with the downstream id `id`.
fn downstream_request(id: u32, text: &str, timeout_ms: i32) -> HttpRequest {
    let mut f = request(BoltVersion::V1, id, bolt::TYPE_REQUEST, text);
    f.timeout = timeout_ms;
    let mut req = Bolt.request_to_http(f).unwrap();
    assert_eq!(
        req.extensions()
            .get::<BoltRequestInfo>()
            .unwrap()
            .request_id,
        id
    );
    req.extensions_mut().insert(());
    req
}

async fn text(resp: HttpResponse) -> String {
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

fn client(
    addr: std::net::SocketAddr,
    opts: UpstreamOptions,
    metrics: Arc<CodecMetrics>,
) -> proxy_codec::mux::MuxClient<Bolt> {
    RpcUpstream::new(Bolt, opts)
        .unwrap()
        .with_metrics(metrics)
        .client(addr)
}

#[tokio::test]
async fn pooled_connections_rewrite_colliding_ids_and_restore_answers() {
    timeout(LIMIT, async {
        let (addr, seen) = bolt_upstream().await;
        let opts = UpstreamOptions {
            connections_per_endpoint: NonZeroU32::new(2).unwrap(),
            ..UpstreamOptions::default()
        };
        let client = client(addr, opts, Arc::default());
        // Ten "downstream connections" all using request id 7 at once.
        let mut tasks = Vec::new();
        for caller in 0..10 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for i in 0..10 {
                    let resp = client
                        .send(downstream_request(
                            7,
                            &format!("{}:c{caller}-{i}", (caller * 7 + i) % 15),
                            0,
                        ))
                        .await
                        .unwrap();
                    assert_eq!(
                        resp.extensions()
                            .get::<bolt::BoltResponseInfo>()
                            .unwrap()
                            .status,
                        0
                    );
                    out.push(text(resp).await);
                }
                (caller, out)
            }));
        }
        for t in tasks {
            let (caller, out) = t.await.unwrap();
            for (i, body) in out.iter().enumerate() {
                assert_eq!(body, &format!("up c{caller}-{i}"));
            }
        }
        let seen = seen.lock().unwrap();
        assert_eq!(seen.ids.len(), 100);
        let conns: HashSet<_> = seen.ids.iter().map(|(c, _)| *c).collect();
        assert_eq!(
            conns.len(),
            2,
            "two pooled connections shared by all callers"
        );
        let unique: HashSet<_> = seen.ids.iter().collect();
        assert_eq!(unique.len(), 100, "ids unique per upstream connection");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_closed_upstream_connection_fails_only_its_own_requests() {
    timeout(LIMIT, async {
        let (addr, _) = bolt_upstream().await;
        let metrics = Arc::new(CodecMetrics::default());
        let opts = UpstreamOptions {
            connections_per_endpoint: NonZeroU32::new(2).unwrap(),
            ..UpstreamOptions::default()
        };
        let client = client(addr, opts, metrics.clone());
        // Slot 0 gets the slow call, slot 1 the one that kills its connection.
        let slow = tokio::spawn({
            let c = client.clone();
            async move { c.send(downstream_request(1, "300:slow", 0)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let dead = client.send(downstream_request(2, "die", 0)).await;
        match dead {
            Err(ProxyError::Upstream {
                request_sent: true, ..
            }) => {}
            other => panic!("expected an upstream failure, got {other:?}"),
        }
        assert_eq!(text(slow.await.unwrap().unwrap()).await, "up slow");
        assert_eq!(
            metrics
                .bolt
                .upstream_closed_in_flight
                .load(Ordering::Relaxed),
            1
        );
        // The slot reconnects.
        for i in 0..4 {
            assert_eq!(
                text(
                    client
                        .send(downstream_request(3, &format!("0:again{i}"), 0))
                        .await
                        .unwrap()
                )
                .await,
                format!("up again{i}")
            );
        }
        assert_eq!(metrics.bolt.upstream_connects.load(Ordering::Relaxed), 3);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn timeouts_unknown_ids_and_upstream_heartbeats() {
    timeout(LIMIT, async {
        let (addr, _) = bolt_upstream().await;
        let metrics = Arc::new(CodecMetrics::default());
        let client = client(addr, UpstreamOptions::default(), metrics.clone());
        let started = std::time::Instant::now();
        // The request's own Bolt timeout (150 ms) bounds the wait.
        match client.send(downstream_request(1, "0:hang", 150)).await {
            Err(ProxyError::Timeout) => {}
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(metrics.bolt.upstream_timeouts.load(Ordering::Relaxed), 1);
        assert_eq!(
            text(
                client
                    .send(downstream_request(2, "0:stray", 0))
                    .await
                    .unwrap()
            )
            .await,
            "up stray"
        );
        assert_eq!(metrics.bolt.unknown_response_ids.load(Ordering::Relaxed), 1);
        assert_eq!(
            text(
                client
                    .send(downstream_request(3, "0:ping", 0))
                    .await
                    .unwrap()
            )
            .await,
            "up ping"
        );
        assert_eq!(metrics.bolt.heartbeats.load(Ordering::Relaxed), 1);
        assert_eq!(metrics.bolt.upstream_connects.load(Ordering::Relaxed), 1);

        // With a configured cap shorter than the request's own timeout.
        let opts = UpstreamOptions {
            request_timeout: Some(Duration::from_millis(100)),
            ..UpstreamOptions::default()
        };
        let capped = self::client(addr, opts, metrics.clone());
        assert!(matches!(
            capped.send(downstream_request(4, "0:hang", 60_000)).await,
            Err(ProxyError::Timeout)
        ));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn connect_failures_are_proxy_errors() {
    timeout(LIMIT, async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let metrics = Arc::new(CodecMetrics::default());
        let client = client(addr, UpstreamOptions::default(), metrics.clone());
        let err = client
            .send(downstream_request(1, "x", 0))
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "connect_failure");
        assert_eq!(
            metrics
                .bolt
                .upstream_connect_failures
                .load(Ordering::Relaxed),
            1
        );
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(
            out.contains("proxy_codec_upstream_connect_failures_total{protocol=\"bolt\"} 1"),
            "{out}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn idle_upstream_connections_ping_and_silent_ones_are_replaced() {
    timeout(LIMIT, async {
        let opts = UpstreamOptions {
            heartbeat_interval: Some(Duration::from_millis(200)),
            ..UpstreamOptions::default()
        };
        // An upstream that answers heartbeats keeps its connection.
        let (addr, seen) = bolt_upstream_answering_heartbeats(true).await;
        let metrics = Arc::new(CodecMetrics::default());
        let c = client(addr, opts.clone(), metrics.clone());
        assert_eq!(
            text(c.send(downstream_request(1, "0:a", 0)).await.unwrap()).await,
            "up a"
        );
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(
            seen.lock().unwrap().heartbeats >= 2,
            "idle connection pinged"
        );
        assert_eq!(
            text(c.send(downstream_request(2, "0:b", 0)).await.unwrap()).await,
            "up b"
        );
        assert_eq!(metrics.bolt.upstream_connects.load(Ordering::Relaxed), 1);

        // One that stays silent is closed after two intervals and replaced on demand.
        let (addr, seen) = bolt_upstream_answering_heartbeats(false).await;
        let metrics = Arc::new(CodecMetrics::default());
        let c = client(addr, opts, metrics.clone());
        assert_eq!(
            text(c.send(downstream_request(1, "0:a", 0)).await.unwrap()).await,
            "up a"
        );
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(seen.lock().unwrap().heartbeats >= 1);
        assert_eq!(
            text(c.send(downstream_request(2, "0:b", 0)).await.unwrap()).await,
            "up b"
        );
        assert_eq!(metrics.bolt.upstream_connects.load(Ordering::Relaxed), 2);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn requests_a_dying_connection_never_wrote_go_out_on_a_fresh_one() {
    timeout(LIMIT, async {
        let (addr, _) = bolt_upstream().await;
        let metrics = Arc::new(CodecMetrics::default());
        // One request in flight per connection: the second waits in the queue.
        let opts = UpstreamOptions {
            max_in_flight: NonZeroU32::MIN,
            ..UpstreamOptions::default()
        };
        let c = client(addr, opts, metrics.clone());
        let first = tokio::spawn({
            let c = c.clone();
            async move { c.send(downstream_request(1, "die", 0)).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let second = c.send(downstream_request(2, "0:second", 0)).await.unwrap();
        assert_eq!(text(second).await, "up second");
        assert!(matches!(
            first.await.unwrap(),
            Err(ProxyError::Upstream {
                request_sent: true,
                ..
            })
        ));
        assert_eq!(metrics.bolt.upstream_connects.load(Ordering::Relaxed), 2);
    })
    .await
    .unwrap();
}

/// A caller that goes away (its future dropped) gives its slot up: the late answer
/// is dropped and counted, never handed to the call in flight when it arrives.
#[tokio::test]
async fn a_late_answer_to_a_caller_gone_is_counted_not_delivered() {
    timeout(LIMIT, async {
        let (addr, _) = bolt_upstream().await;
        let metrics = Arc::new(CodecMetrics::default());
        let c = client(addr, UpstreamOptions::default(), metrics.clone());
        let gone = timeout(
            Duration::from_millis(50),
            c.send(downstream_request(1, "200:late", 0)),
        );
        assert!(gone.await.is_err());
        // In flight when the late answer arrives (at 200 ms).
        let later = c.send(downstream_request(1, "400:later", 0)).await.unwrap();
        assert_eq!(text(later).await, "up later");
        let unknown = metrics.bolt.unknown_response_ids.load(Ordering::Relaxed);
        assert_eq!(unknown, 1);
        assert_eq!(metrics.bolt.upstream_connects.load(Ordering::Relaxed), 1);
    })
    .await
    .unwrap();
}

/// `heartbeat_interval` is the interval asked: a quiet connection whose upstream
/// answers pings sends one every interval, not rounded up to a coarser tick.
#[tokio::test]
async fn heartbeats_go_out_at_the_interval_asked() {
    timeout(LIMIT, async {
        let opts = UpstreamOptions {
            heartbeat_interval: Some(Duration::from_millis(400)),
            ..UpstreamOptions::default()
        };
        let (addr, seen) = bolt_upstream_answering_heartbeats(true).await;
        let c = client(addr, opts, Arc::new(CodecMetrics::default()));
        assert_eq!(
            text(c.send(downstream_request(1, "0:a", 0)).await.unwrap()).await,
            "up a"
        );
        let quiet = std::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let pings = seen.lock().unwrap().heartbeats;
        // Due at 0.4, 0.8, 1.2, 1.6 and 2.0 s (plus a loopback round trip each).
        assert!(
            (4..=6).contains(&pings),
            "{pings} heartbeats in {:?} at a 400ms interval",
            quiet.elapsed()
        );
    })
    .await
    .unwrap();
}

/// A call whose request carries no timeout, to a cluster without `request_timeout`,
/// still ends: after `DEFAULT_REQUEST_TIMEOUT`, with a timeout error, when the
/// upstream never answers (paused clock).
#[tokio::test(start_paused = true)]
async fn a_call_without_any_timeout_gets_the_default_one() {
    timeout(Duration::from_secs(120), async {
        let (addr, _seen) = bolt_upstream().await;
        let metrics = Arc::new(CodecMetrics::default());
        let c = client(addr, UpstreamOptions::default(), metrics.clone());
        let started = tokio::time::Instant::now();
        let err = c
            .send(downstream_request(1, "0:hang", 0))
            .await
            .unwrap_err();
        assert!(matches!(err, ProxyError::Timeout), "{err}");
        let waited = started.elapsed();
        assert!(
            waited >= proxy_codec::mux::DEFAULT_REQUEST_TIMEOUT
                && waited < proxy_codec::mux::DEFAULT_REQUEST_TIMEOUT + Duration::from_secs(2),
            "waited {waited:?}"
        );
        assert_eq!(metrics.bolt.upstream_timeouts.load(Ordering::Relaxed), 1);
    })
    .await
    .expect("the call never ended");
}
