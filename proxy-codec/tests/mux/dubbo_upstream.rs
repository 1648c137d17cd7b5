//! The upstream side for Dubbo: an `RpcUpstream` client against an in-process Dubbo
//! upstream on 127.0.0.1 that announces a graceful shutdown.

use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use proxy_codec::{
    config::UpstreamOptions,
    dubbo::{self, DubboFrame},
    hessian2::{Reader, Writer},
    metrics::CodecMetrics,
    Dubbo, Protocol, RpcUpstream,
};
use tokio::{io::AsyncWriteExt, net::TcpListener, time::timeout};

use super::{dubbo_request, read_frame, LIMIT};

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
        let c = RpcUpstream::new(Dubbo, UpstreamOptions::default())
            .unwrap()
            .with_metrics(metrics.clone())
            .client(addr);
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

/// Many calls at once on the one connection: each gets the answer to its own
/// request, whatever order the ids were given and answered in.
#[tokio::test]
async fn concurrent_dubbo_calls_on_one_connection_get_their_own_answers() {
    timeout(LIMIT, async {
        let addr = dubbo_upstream().await;
        let metrics = Arc::new(CodecMetrics::default());
        let c = RpcUpstream::new(Dubbo, UpstreamOptions::default())
            .unwrap()
            .with_metrics(metrics.clone())
            .client(addr);
        let calls: Vec<_> = (0..500)
            .map(|i| {
                let c = c.clone();
                // Every caller uses downstream id 7: the upstream ids are the client's.
                let req = Dubbo
                    .request_to_http(dubbo_request(7, &format!("m{i}")))
                    .unwrap();
                tokio::spawn(async move { c.send(req).await.unwrap() })
            })
            .collect();
        for (i, call) in calls.into_iter().enumerate() {
            let body = call
                .await
                .unwrap()
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes();
            let mut r = Reader::new(&body);
            assert_eq!(r.read_int().unwrap(), dubbo::RESPONSE_VALUE);
            assert_eq!(r.read_string().unwrap().as_deref(), Some(&*format!("m{i}")));
        }
        assert_eq!(metrics.dubbo.upstream_connects.load(Ordering::Relaxed), 1);
        assert_eq!(
            metrics.dubbo.unknown_response_ids.load(Ordering::Relaxed),
            0
        );
    })
    .await
    .unwrap();
}
