//! The downstream side: `RpcServer` on in-memory streams.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use bytes::{Bytes, BytesMut};
use proxy_codec::{
    bolt::{self, BoltVersion},
    config::ServerOptions,
    dubbo::{self, DubboFrame},
    hessian2::{Reader, Writer},
    metrics::CodecMetrics,
    Bolt, Dubbo,
};
use proxy_core::{config::ByteSize, BoxHttp, HttpRequest, HttpResponse, ProxyError};
use tokio::{io::AsyncWriteExt, time::timeout};

use super::{dubbo_request, echo_service, heartbeat, read_frame, request, serve, wire, LIMIT};

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

/// A request over `max_frame_bytes` is refused from its header alone: it gets the
/// protocol's error under its own id, its body is skipped as it arrives (never
/// buffered), and the calls around it on the same connection are answered.
#[tokio::test]
async fn an_oversized_request_fails_alone_and_its_body_is_skipped() {
    timeout(LIMIT, async {
        let metrics = Arc::new(CodecMetrics::default());
        let opts = ServerOptions {
            max_frame_bytes: ByteSize(4096),
            ..ServerOptions::default()
        };
        let calls = Arc::new(AtomicUsize::new(0));
        let mut c = serve(Bolt, opts, echo_service(calls.clone()), metrics.clone());
        let big = "b".repeat(1 << 20);
        let mut bytes = wire(
            &Bolt,
            &[
                request(BoltVersion::V1, 8, bolt::TYPE_REQUEST, "before"),
                request(BoltVersion::V1, 9, bolt::TYPE_REQUEST, &big),
                request(BoltVersion::V1, 10, bolt::TYPE_REQUEST, "after"),
            ],
        );
        // Written in pieces, so the skipped body spans many reads.
        let mut buf = BytesMut::new();
        for chunk in bytes.chunks(64 * 1024) {
            c.write_all(chunk).await.unwrap();
        }
        bytes.clear();
        let mut answers = std::collections::HashMap::new();
        for _ in 0..3 {
            let f = read_frame(&Bolt, &mut c, &mut buf)
                .await
                .expect("an answer");
            answers.insert(f.request_id, f);
        }
        assert_eq!(answers[&9].status, bolt::status::CODEC_EXCEPTION);
        assert_eq!(answers[&8].status, bolt::status::SUCCESS);
        assert_eq!(answers[&10].status, bolt::status::SUCCESS);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "the oversized call was not forwarded"
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

/// A Bolt frame with a command code that is not an RPC request is answered with the
/// protocol's error under its id and never reaches the request stack; the
/// connection carries on.
#[tokio::test]
async fn an_unknown_bolt_command_is_answered_not_forwarded() {
    timeout(LIMIT, async {
        let calls = Arc::new(AtomicUsize::new(0));
        let metrics = Arc::new(CodecMetrics::default());
        let mut c = serve(
            Bolt,
            ServerOptions::default(),
            echo_service(calls.clone()),
            metrics,
        );
        let mut odd = request(BoltVersion::V1, 11, bolt::TYPE_REQUEST, "odd");
        odd.cmd_code = 0x0007;
        let ok = request(BoltVersion::V1, 12, bolt::TYPE_REQUEST, "ok");
        c.write_all(&wire(&Bolt, &[odd, ok])).await.unwrap();
        let mut buf = BytesMut::new();
        let mut answers = std::collections::HashMap::new();
        for _ in 0..2 {
            let f = read_frame(&Bolt, &mut c, &mut buf)
                .await
                .expect("an answer");
            answers.insert(f.request_id, f.status);
        }
        assert_eq!(answers[&11], bolt::status::CODEC_EXCEPTION);
        assert_eq!(answers[&12], bolt::status::SUCCESS);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "the unknown command was not forwarded"
        );
    })
    .await
    .unwrap();
}
