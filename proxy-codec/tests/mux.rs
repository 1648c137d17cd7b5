//! The multiplexing machinery on real sockets and in-memory streams: many requests in
//! flight on one downstream connection, heartbeats, bad frames, proxy-side failures,
//! pooled upstream connections with rewritten request ids, timeouts and failure
//! isolation.
#![allow(clippy::unwrap_used)]

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use proxy_codec::{
    bolt::{self, BoltFrame, BoltRequestInfo, BoltVersion},
    config::{ServerOptions, UpstreamOptions},
    dubbo::{self, DubboFrame},
    hessian2::{Reader, Writer},
    metrics::CodecMetrics,
    Bolt, Dubbo, Protocol, RpcServer, RpcUpstream,
};
use proxy_core::{BoxHttp, Connection, HttpRequest, HttpResponse, ProxyError, Stream};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, DuplexStream},
    net::{TcpListener, TcpStream},
    time::timeout,
};

const LIMIT: Duration = Duration::from_secs(10);

fn request(version: BoltVersion, id: u32, rpc_type: u8, content: &str) -> BoltFrame {
    BoltFrame {
        version,
        rpc_type,
        cmd_code: bolt::CMD_REQUEST,
        ver2: 1,
        request_id: id,
        codec: bolt::CODEC_HESSIAN2,
        timeout: 0,
        status: 0,
        class_name: Bytes::from_static(bolt::SOFA_REQUEST.as_bytes()),
        header: Bolt::header_map([
            ("sofa_head_target_service", Some("com.example.Echo:1.0")),
            ("sofa_head_method_name", Some("echo")),
        ]),
        content: Bytes::from(content.to_owned()),
    }
}

fn heartbeat(id: u32) -> BoltFrame {
    BoltFrame {
        cmd_code: bolt::CMD_HEARTBEAT,
        header: Bytes::new(),
        class_name: Bytes::new(),
        content: Bytes::new(),
        ..request(BoltVersion::V1, id, bolt::TYPE_REQUEST, "")
    }
}

fn wire<P: Protocol>(p: &P, frames: &[P::Frame]) -> Vec<u8> {
    let mut b = BytesMut::new();
    for f in frames {
        p.encode(f, &mut b).unwrap();
    }
    b.to_vec()
}

/// Reads one frame from `s`.
async fn read_frame<P: Protocol, S: AsyncReadExt + Unpin>(
    p: &P,
    s: &mut S,
    buf: &mut BytesMut,
) -> Option<P::Frame> {
    loop {
        if let Some(n) = p.frame_length(buf).unwrap() {
            if buf.len() as u64 >= n {
                return Some(p.decode(buf.split_to(n as usize).freeze()).unwrap());
            }
        }
        if s.read_buf(buf).await.unwrap() == 0 {
            return None;
        }
    }
}

/// A request stack that echoes the body after a delay the body names (`<ms>:<text>`)
/// and counts its calls.
fn echo_service(calls: Arc<AtomicUsize>) -> BoxHttp {
    BoxHttp::new(tower::service_fn(move |req: HttpRequest| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let path = req.uri().path().to_owned();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let text = String::from_utf8_lossy(&body).into_owned();
            let ms: u64 = text.split(':').next().unwrap_or("0").parse().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let mut resp = HttpResponse::new(format!("echo {path} {text}").into());
            resp.headers_mut().insert("x-echo", "1".parse().unwrap());
            Ok::<_, proxy_core::BoxError>(resp)
        }
    }))
}

/// Serves `protocol` on one end of an in-memory stream; returns the other end.
fn serve<P: Protocol>(
    protocol: P,
    options: ServerOptions,
    service: BoxHttp,
    metrics: Arc<CodecMetrics>,
) -> DuplexStream {
    let (client, server) = tokio::io::duplex(1 << 16);
    let srv = RpcServer::new(protocol, options, metrics);
    tokio::spawn(async move {
        let conn = Connection {
            stream: Stream::Boxed(Box::new(server)),
            peer: None,
            listener: "test".into(),
            secure: false,
            extensions: http::Extensions::new(),
        };
        srv.serve(conn, Bytes::new(), service, std::future::pending())
            .await;
    });
    client
}

#[tokio::test]
async fn many_requests_on_one_connection_are_answered_by_id_as_they_complete() {
    timeout(LIMIT, async {
        let calls = Arc::new(AtomicUsize::new(0));
        let mut c = serve(
            Bolt,
            ServerOptions::default(),
            echo_service(calls.clone()),
            Arc::default(),
        );
        let version = BoltVersion::V2 {
            version: 2,
            switch: 1,
        };
        let frames: Vec<_> = (1..=100u32)
            .map(|id| {
                request(
                    version,
                    id,
                    bolt::TYPE_REQUEST,
                    &format!("{}:call-{id}", (100 - id) % 25),
                )
            })
            .collect();
        c.write_all(&wire(&Bolt, &frames)).await.unwrap();
        let mut buf = BytesMut::new();
        let mut seen = HashSet::new();
        let mut order = Vec::new();
        for _ in 0..100 {
            let f = read_frame(&Bolt, &mut c, &mut buf).await.unwrap();
            assert_eq!(f.status, bolt::status::SUCCESS);
            assert_eq!(f.version, version);
            let body = String::from_utf8(f.content.to_vec()).unwrap();
            let want = format!(
                "echo /com.example.Echo:1.0/echo {}:call-{}",
                (100 - f.request_id) % 25,
                f.request_id
            );
            assert_eq!(body, want, "answer matched to its caller");
            let headers = Bolt::parse_header_map(f.header).unwrap();
            assert!(headers
                .iter()
                .any(|(k, v)| &k[..] == b"x-echo" && v.as_deref() == Some(&b"1"[..])));
            assert!(seen.insert(f.request_id));
            order.push(f.request_id);
        }
        assert_ne!(
            order,
            (1..=100).collect::<Vec<_>>(),
            "answers come as they complete"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 100);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn heartbeats_are_answered_locally_and_one_way_calls_get_no_answer() {
    timeout(LIMIT, async {
        let calls = Arc::new(AtomicUsize::new(0));
        let mut c = serve(
            Bolt,
            ServerOptions::default(),
            echo_service(calls.clone()),
            Arc::default(),
        );
        let frames = [
            heartbeat(5),
            request(BoltVersion::V1, 6, bolt::TYPE_ONEWAY, "0:fire"),
            request(BoltVersion::V1, 7, bolt::TYPE_REQUEST, "20:ask"),
        ];
        c.write_all(&wire(&Bolt, &frames)).await.unwrap();
        let mut buf = BytesMut::new();
        let ack = read_frame(&Bolt, &mut c, &mut buf).await.unwrap();
        assert_eq!(
            (ack.request_id, ack.cmd_code, ack.rpc_type),
            (5, bolt::CMD_HEARTBEAT, bolt::TYPE_RESPONSE)
        );
        let answer = read_frame(&Bolt, &mut c, &mut buf).await.unwrap();
        assert_eq!(answer.request_id, 7, "the one-way call is not answered");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "the one-way call still went through"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_oversized_frame_is_refused_from_its_header_alone() {
    timeout(LIMIT, async {
        let metrics = Arc::new(CodecMetrics::default());
        let opts: ServerOptions = serde_yaml::from_str("max_frame_length: 4096").unwrap();
        let mut c = serve(Bolt, opts, echo_service(Arc::default()), metrics.clone());
        let mut head = wire(
            &Bolt,
            &[request(BoltVersion::V1, 9, bolt::TYPE_REQUEST, "x")],
        );
        head.truncate(22);
        head[18..22].copy_from_slice(&(64u32 << 20).to_be_bytes());
        c.write_all(&head).await.unwrap();
        let mut buf = BytesMut::new();
        let reply = read_frame(&Bolt, &mut c, &mut buf).await.unwrap();
        assert_eq!(
            (reply.request_id, reply.status),
            (9, bolt::status::CODEC_EXCEPTION)
        );
        assert!(
            read_frame(&Bolt, &mut c, &mut buf).await.is_none(),
            "connection closed"
        );
        assert_eq!(metrics.bolt.oversized_frames.load(Ordering::Relaxed), 1);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_malformed_frame_ends_the_connection_with_an_error_reply() {
    timeout(LIMIT, async {
        let metrics = Arc::new(CodecMetrics::default());
        let mut c = serve(
            Bolt,
            ServerOptions::default(),
            echo_service(Arc::default()),
            metrics.clone(),
        );
        let mut bad = wire(
            &Bolt,
            &[request(
                BoltVersion::V2 {
                    version: 2,
                    switch: 1,
                },
                3,
                bolt::TYPE_REQUEST,
                "0:x",
            )],
        );
        let n = bad.len();
        bad[n - 1] ^= 1; // CRC mismatch
        c.write_all(&bad).await.unwrap();
        let mut buf = BytesMut::new();
        let reply = read_frame(&Bolt, &mut c, &mut buf).await.unwrap();
        assert_eq!(
            (reply.request_id, reply.status),
            (3, bolt::status::CODEC_EXCEPTION)
        );
        assert!(read_frame(&Bolt, &mut c, &mut buf).await.is_none());
        assert_eq!(metrics.bolt.malformed_frames.load(Ordering::Relaxed), 1);

        // Not Bolt at all: closed without a reply.
        let mut c = serve(
            Bolt,
            ServerOptions::default(),
            echo_service(Arc::default()),
            metrics.clone(),
        );
        c.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(read_frame(&Bolt, &mut c, &mut BytesMut::new())
            .await
            .is_none());
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn proxy_side_failures_become_protocol_statuses() {
    timeout(LIMIT, async {
        let failing = |err: fn() -> ProxyError| {
            BoxHttp::new(tower::service_fn(move |_req: HttpRequest| async move {
                Ok::<_, proxy_core::BoxError>(proxy_core::proxy::local_reply(&err()))
            }))
        };
        let mut c = serve(
            Bolt,
            ServerOptions::default(),
            failing(|| ProxyError::NoRoute),
            Arc::default(),
        );
        c.write_all(&wire(
            &Bolt,
            &[request(BoltVersion::V1, 1, bolt::TYPE_REQUEST, "x")],
        ))
        .await
        .unwrap();
        let r = read_frame(&Bolt, &mut c, &mut BytesMut::new())
            .await
            .unwrap();
        assert_eq!((r.request_id, r.status), (1, bolt::status::NO_PROCESSOR));

        let mut c = serve(
            Bolt,
            ServerOptions::default(),
            failing(|| ProxyError::Timeout),
            Arc::default(),
        );
        c.write_all(&wire(
            &Bolt,
            &[request(BoltVersion::V1, 2, bolt::TYPE_REQUEST, "x")],
        ))
        .await
        .unwrap();
        let r = read_frame(&Bolt, &mut c, &mut BytesMut::new())
            .await
            .unwrap();
        assert_eq!((r.request_id, r.status), (2, bolt::status::TIMEOUT));

        let mut c = serve(
            Dubbo,
            ServerOptions::default(),
            failing(|| ProxyError::NoRoute),
            Arc::default(),
        );
        c.write_all(&wire(&Dubbo, &[dubbo_request(11, "sayHello")]))
            .await
            .unwrap();
        let r = read_frame(&Dubbo, &mut c, &mut BytesMut::new())
            .await
            .unwrap();
        assert_eq!(
            (r.request_id, r.status),
            (11, dubbo::status::SERVICE_NOT_FOUND)
        );
        assert_eq!(
            Reader::new(&r.body).read_string().unwrap().as_deref(),
            Some("no route matched")
        );
    })
    .await
    .unwrap();
}

fn dubbo_request(id: u64, method: &str) -> DubboFrame {
    let mut w = Writer::new();
    w.string("2.0.2")
        .string("org.example.DemoService")
        .string("1.0.0")
        .string(method);
    w.string("Ljava/lang/String;").string("world");
    w.string_map([
        ("path", "org.example.DemoService"),
        ("tenant", "t1"),
        ("timeout", "2500"),
    ]);
    DubboFrame {
        flags: dubbo::FLAG_REQUEST | dubbo::FLAG_TWO_WAY | dubbo::HESSIAN2,
        status: 0,
        request_id: id,
        body: Bytes::from(w.into_bytes()),
    }
}

#[tokio::test]
async fn dubbo_heartbeats_and_requests_share_a_connection() {
    timeout(LIMIT, async {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let svc = BoxHttp::new(tower::service_fn(move |req: HttpRequest| {
            let seen = seen2.clone();
            async move {
                seen.lock().unwrap().push((
                    req.uri().path().to_owned(),
                    req.headers()["tenant"].to_str().unwrap().to_owned(),
                ));
                let mut w = Writer::new();
                w.int(dubbo::RESPONSE_VALUE).string("hello");
                Ok::<_, proxy_core::BoxError>(HttpResponse::new(w.into_bytes().into()))
            }
        }));
        let mut c = serve(Dubbo, ServerOptions::default(), svc, Arc::default());
        let ping = DubboFrame {
            flags: dubbo::FLAG_REQUEST | dubbo::FLAG_TWO_WAY | dubbo::FLAG_EVENT | dubbo::HESSIAN2,
            status: 0,
            request_id: 77,
            body: Bytes::from_static(b"N"),
        };
        c.write_all(&wire(&Dubbo, &[ping, dubbo_request(78, "sayHello")]))
            .await
            .unwrap();
        let mut buf = BytesMut::new();
        let pong = read_frame(&Dubbo, &mut c, &mut buf).await.unwrap();
        assert!(pong.is_event() && !pong.is_request());
        assert_eq!((pong.request_id, pong.status), (77, dubbo::status::OK));
        let r = read_frame(&Dubbo, &mut c, &mut buf).await.unwrap();
        assert_eq!((r.request_id, r.status), (78, dubbo::status::OK));
        assert_eq!(
            seen.lock().unwrap()[0],
            (
                "/org.example.DemoService/sayHello".to_owned(),
                "t1".to_owned()
            )
        );
    })
    .await
    .unwrap();
}

// === upstream side ===

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
    String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

fn client(
    addr: std::net::SocketAddr,
    opts: UpstreamOptions,
    metrics: Arc<CodecMetrics>,
) -> proxy_codec::mux::MuxClient<Bolt> {
    RpcUpstream::new(Bolt, opts, metrics).client(move || async move {
        TcpStream::connect(addr)
            .await
            .map(Stream::Tcp)
            .map_err(|source| ProxyError::Connect { addr, source })
    })
}

#[tokio::test]
async fn pooled_connections_rewrite_colliding_ids_and_restore_answers() {
    timeout(LIMIT, async {
        let (addr, seen) = bolt_upstream().await;
        let opts: UpstreamOptions = serde_yaml::from_str("connections_per_endpoint: 2").unwrap();
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
        let opts: UpstreamOptions = serde_yaml::from_str("connections_per_endpoint: 2").unwrap();
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
        let opts: UpstreamOptions = serde_yaml::from_str("request_timeout: 100ms").unwrap();
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
        let opts: UpstreamOptions = serde_yaml::from_str("heartbeat_interval: 200ms").unwrap();
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
async fn idle_and_slow_connections_are_closed() {
    timeout(LIMIT, async {
        let opts: ServerOptions =
            serde_yaml::from_str("idle_timeout: 150ms\nframe_timeout: 150ms").unwrap();
        // Idle: nothing sent at all.
        let mut c = serve(
            Bolt,
            opts.clone(),
            echo_service(Arc::default()),
            Arc::default(),
        );
        let started = std::time::Instant::now();
        assert!(read_frame(&Bolt, &mut c, &mut BytesMut::new())
            .await
            .is_none());
        assert!(started.elapsed() >= Duration::from_millis(100));
        // Busy but answered, then idle: the answer comes, then the close.
        let mut c = serve(
            Bolt,
            opts.clone(),
            echo_service(Arc::default()),
            Arc::default(),
        );
        c.write_all(&wire(
            &Bolt,
            &[request(BoltVersion::V1, 1, bolt::TYPE_REQUEST, "300:slow")],
        ))
        .await
        .unwrap();
        let mut buf = BytesMut::new();
        assert_eq!(
            read_frame(&Bolt, &mut c, &mut buf)
                .await
                .unwrap()
                .request_id,
            1
        );
        assert!(read_frame(&Bolt, &mut c, &mut buf).await.is_none());
        // Slow: half a frame, then nothing.
        let mut c = serve(Bolt, opts, echo_service(Arc::default()), Arc::default());
        let frame = wire(
            &Bolt,
            &[request(BoltVersion::V1, 2, bolt::TYPE_REQUEST, "0:x")],
        );
        c.write_all(&frame[..frame.len() / 2]).await.unwrap();
        let started = std::time::Instant::now();
        assert!(read_frame(&Bolt, &mut c, &mut BytesMut::new())
            .await
            .is_none());
        assert!(started.elapsed() < Duration::from_secs(2));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn drain_finishes_requests_in_flight_then_closes() {
    timeout(LIMIT, async {
        let (client, server) = tokio::io::duplex(1 << 16);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let srv = RpcServer::new(Bolt, ServerOptions::default(), Arc::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let svc = echo_service(calls.clone());
        let task = tokio::spawn(async move {
            let conn = Connection {
                stream: Stream::Boxed(Box::new(server)),
                peer: None,
                listener: "test".into(),
                secure: false,
                extensions: http::Extensions::new(),
            };
            srv.serve(conn, Bytes::new(), svc, async move {
                let _ = rx.await;
            })
            .await;
        });
        let mut c = client;
        c.write_all(&wire(
            &Bolt,
            &[request(BoltVersion::V1, 1, bolt::TYPE_REQUEST, "200:slow")],
        ))
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Sent after the drain: not read.
        let _ = c
            .write_all(&wire(
                &Bolt,
                &[request(BoltVersion::V1, 2, bolt::TYPE_REQUEST, "0:late")],
            ))
            .await;
        let mut buf = BytesMut::new();
        assert_eq!(
            read_frame(&Bolt, &mut c, &mut buf)
                .await
                .unwrap()
                .request_id,
            1
        );
        assert!(read_frame(&Bolt, &mut c, &mut buf).await.is_none());
        task.await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_peer_that_never_reads_its_answers_is_cut_off() {
    timeout(LIMIT, async {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let opts: ServerOptions = serde_yaml::from_str("frame_timeout: 200ms").unwrap();
        let srv = RpcServer::new(Bolt, opts, Arc::default());
        let task = tokio::spawn(async move {
            let conn = Connection {
                stream: Stream::Boxed(Box::new(server)),
                peer: None,
                listener: "test".into(),
                secure: false,
                extensions: http::Extensions::new(),
            };
            srv.serve(
                conn,
                Bytes::new(),
                echo_service(Arc::default()),
                std::future::pending(),
            )
            .await;
        });
        // Heartbeats whose answers pile up unread: the server stops reading at its
        // write high-water mark and closes once writing stalls past frame_timeout.
        let (_rd, mut wr) = tokio::io::split(client);
        let pings: Vec<_> = (0..100_000).map(heartbeat).collect();
        let bytes = wire(&Bolt, &pings);
        tokio::spawn(async move {
            let _ = wr.write_all(&bytes).await;
        });
        task.await.unwrap();
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
        let opts: UpstreamOptions = serde_yaml::from_str("max_in_flight: 1").unwrap();
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

/// A Dubbo upstream answering `OK` with the method name; on `bye` it first sends the
/// read-only event of a graceful shutdown.
async fn dubbo_upstream() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = BytesMut::new();
                while let Some(f) = read_frame(&Dubbo, &mut s, &mut buf).await {
                    if f.is_event() {
                        continue;
                    }
                    let method = Dubbo::parse_invocation(&f.body).unwrap().method;
                    let mut out = BytesMut::new();
                    if method == "bye" {
                        let readonly = DubboFrame {
                            flags: dubbo::FLAG_REQUEST | dubbo::FLAG_EVENT | dubbo::HESSIAN2,
                            status: 0,
                            request_id: 0,
                            body: Bytes::from_static(&[0x01, b'R']),
                        };
                        Dubbo.encode(&readonly, &mut out).unwrap();
                    }
                    let mut w = Writer::new();
                    w.int(dubbo::RESPONSE_VALUE).string(&method);
                    let answer = DubboFrame {
                        flags: dubbo::HESSIAN2,
                        status: dubbo::status::OK,
                        request_id: f.request_id,
                        body: Bytes::from(w.into_bytes()),
                    };
                    Dubbo.encode(&answer, &mut out).unwrap();
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_dubbo_read_only_event_moves_new_requests_to_a_fresh_connection() {
    timeout(LIMIT, async {
        let addr = dubbo_upstream().await;
        let metrics = Arc::new(CodecMetrics::default());
        let c = RpcUpstream::new(Dubbo, UpstreamOptions::default(), metrics.clone()).client(
            move || async move {
                TcpStream::connect(addr)
                    .await
                    .map(Stream::Tcp)
                    .map_err(|source| ProxyError::Connect { addr, source })
            },
        );
        let call = |id, method| {
            let req = Dubbo.request_to_http(dubbo_request(id, method)).unwrap();
            let c = c.clone();
            async move { c.send(req).await.unwrap() }
        };
        let first = call(1, "bye").await;
        assert_eq!(first.status(), http::StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = call(2, "hello").await;
        let body = second.into_body().collect().await.unwrap().to_bytes();
        let mut r = Reader::new(&body);
        assert_eq!(r.read_int().unwrap(), dubbo::RESPONSE_VALUE);
        assert_eq!(r.read_string().unwrap().as_deref(), Some("hello"));
        assert_eq!(metrics.dubbo.upstream_connects.load(Ordering::Relaxed), 2);
    })
    .await
    .unwrap();
}
