//! Messages over `max_frame_bytes`, on real sockets: each of the four cases fails
//! only its own call with the protocol's error, is counted under its reason in the
//! codec metrics and is logged once at `info` with `protocol`, `len`, `max` and
//! `reason`. Here: a request over the listener's limit (`body_too_large`), an answer
//! over it (`response_too_large`), a request body over the cluster's limit
//! (`body_too_large`, not sent); in `cluster.rs`, a response over the cluster's
//! limit through a running proxy (`response_too_large`, also as the endpoint's
//! local-error reason and in the cluster's warning, not `upstream_reset`).
#![allow(clippy::unwrap_used)]

mod cluster;
mod logs;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use proxy_codec::{
    bolt::{self, BoltFrame},
    config::{ServerOptions, UpstreamOptions},
    dubbo::{self, DubboFrame},
    hessian2::Writer,
    metrics::{CodecMetrics, TooLarge},
    Bolt, Dubbo, Protocol, RpcServer, RpcUpstream,
};
use proxy_core::{config::ByteSize, BoxHttp, HttpRequest, HttpResponse, ProxyError};
use proxy_test_support::rpc::{self, read_frame};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
    time::timeout,
};

/// The limit on every test.
const LIMIT: Duration = Duration::from_secs(20);

/// The `max_frame_bytes` of every listener and cluster here.
const MAX: usize = 4096;

/// A body well over [`MAX`].
const BIG: usize = 10_000;

fn bolt_call(id: u32, content: impl Into<Bytes>) -> BoltFrame {
    BoltFrame {
        timeout: 5000,
        ..BoltFrame::sofa_request(id, "com.example.Echo:1.0", "echo", content)
    }
}

fn dubbo_call(id: u64, arg: &str) -> DubboFrame {
    let mut w = Writer::new();
    w.string("2.0.2")
        .string("org.example.DemoService")
        .string("1.0.0")
        .string("echo")
        .string("Ljava/lang/String;")
        .string(arg)
        .string_map([("path", "org.example.DemoService")]);
    DubboFrame {
        flags: dubbo::FLAG_REQUEST | dubbo::FLAG_TWO_WAY | dubbo::HESSIAN2,
        status: 0,
        request_id: id,
        body: Bytes::from(w.into_bytes()),
    }
}

fn wire<P: Protocol>(p: &P, frames: &[P::Frame]) -> Vec<u8> {
    let mut b = BytesMut::new();
    for f in frames {
        p.encode(f, &mut b).unwrap();
    }
    b.to_vec()
}

/// The `x-proxy-error` reason a Bolt reply carries in its header map.
fn bolt_reason(reply: BoltFrame) -> Option<String> {
    let resp = Bolt.response_to_http(reply);
    let reason = resp.headers().get("x-proxy-error")?;
    Some(reason.to_str().unwrap().to_owned())
}

/// A request stack that answers each call with `size` bytes.
fn answers_of(size: usize) -> BoxHttp {
    BoxHttp::new(tower::service_fn(move |req: HttpRequest| async move {
        let _ = req.into_body().collect().await.unwrap();
        Ok::<_, proxy_core::BoxError>(HttpResponse::new(vec![b'a'; size].into()))
    }))
}

/// Serves `protocol` with `max_frame_bytes` [`MAX`] on `127.0.0.1:0`, every
/// connection through `service`.
async fn listener<P: Protocol + Copy>(
    protocol: P,
    service: BoxHttp,
    metrics: Arc<CodecMetrics>,
) -> SocketAddr {
    let options = ServerOptions {
        max_frame_bytes: ByteSize(MAX as u64),
        ..ServerOptions::default()
    };
    let server = RpcServer::new(protocol, options)
        .unwrap()
        .with_metrics(metrics);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let (server, service) = (server.clone(), service.clone());
            tokio::spawn(async move {
                server
                    .serve_stream(s, service, std::future::pending())
                    .await;
            });
        }
    });
    addr
}

/// Checks that exactly one `info` line reports `kind` for `protocol`, with `max`
/// [`MAX`], and returns its `len`.
fn logged(protocol: &str, kind: TooLarge) -> u64 {
    let max = MAX.to_string();
    let lines = logs::lines_with(&[
        ("protocol", protocol),
        ("kind", kind.as_str()),
        ("reason", kind.reason()),
        ("max", &max),
    ]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].level, tracing::Level::INFO);
    assert_eq!(lines[0].target, "proxy_codec::mux::log");
    lines[0].field("len").unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_request_over_the_listeners_limit_is_answered_body_too_large() {
    logs::capture();
    timeout(LIMIT, async {
        let metrics = Arc::new(CodecMetrics::default());
        let addr = listener(Bolt, answers_of(2), metrics.clone()).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        let big = bolt_call(1, vec![b'x'; BIG]);
        let frame_len = wire(&Bolt, std::slice::from_ref(&big)).len() as u64;
        c.write_all(&wire(&Bolt, &[big, bolt_call(2, "small")]))
            .await
            .unwrap();
        let mut buf = BytesMut::new();
        let refused = read_frame(&Bolt, &mut c, &mut buf).await.unwrap();
        assert_eq!(refused.request_id, 1);
        assert_eq!(refused.status, bolt::status::CODEC_EXCEPTION);
        assert_eq!(bolt_reason(refused).as_deref(), Some("body_too_large"));
        // The connection's next call is served.
        let served = read_frame(&Bolt, &mut c, &mut buf).await.unwrap();
        assert_eq!((served.request_id, served.status), (2, bolt::status::SUCCESS));

        let bolt = &metrics.bolt;
        assert_eq!(bolt.too_large(TooLarge::Request), 1);
        assert_eq!(bolt.too_large(TooLarge::Answer), 0);
        assert_eq!(bolt.error_replies.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(logged("bolt", TooLarge::Request), frame_len);
        let mut text = String::new();
        metrics.render(&mut text);
        assert!(text.contains(
            "proxy_codec_too_large_total{protocol=\"bolt\",kind=\"request\",reason=\"body_too_large\"} 1\n"
        ));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_answer_over_the_listeners_limit_fails_its_call_response_too_large() {
    logs::capture();
    timeout(LIMIT, async {
        let metrics = Arc::new(CodecMetrics::default());
        let addr = listener(Dubbo, answers_of(BIG), metrics.clone()).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(&wire(&Dubbo, &[dubbo_call(7, "hello")]))
            .await
            .unwrap();
        let mut buf = BytesMut::new();
        let reply = read_frame(&Dubbo, &mut c, &mut buf).await.unwrap();
        assert_eq!(reply.request_id, 7);
        assert!(!reply.is_request());
        assert_eq!(reply.status, dubbo::status::BAD_RESPONSE);

        let d = &metrics.dubbo;
        assert_eq!(d.too_large(TooLarge::Answer), 1);
        assert_eq!(d.too_large(TooLarge::Request), 0);
        assert_eq!(logged("dubbo", TooLarge::Answer), BIG as u64);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_request_body_over_the_clusters_limit_is_not_sent() {
    logs::capture();
    timeout(LIMIT, async {
        let upstream = rpc::upstream(Bolt, "up");
        let metrics = Arc::new(CodecMetrics::default());
        let options = UpstreamOptions {
            max_frame_bytes: ByteSize(MAX as u64),
            ..UpstreamOptions::default()
        };
        let client = RpcUpstream::new(Bolt, options)
            .unwrap()
            .with_metrics(metrics.clone())
            .client(upstream.addr);
        let big = Bolt.request_to_http(bolt_call(1, vec![b'x'; BIG])).unwrap();
        let err = client.send(big).await.unwrap_err();
        assert!(
            matches!(err, ProxyError::RequestTooLarge { len, max } if len == BIG as u64 && max == MAX as u64),
            "{err}"
        );
        assert_eq!(err.reason(), "body_too_large");
        assert_eq!(err.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
        // A call within the limit goes out; the refused one never did.
        let small = Bolt.request_to_http(bolt_call(2, "small")).unwrap();
        client.send(small).await.unwrap();
        assert_eq!(upstream.hits(), 1);

        assert_eq!(metrics.bolt.too_large(TooLarge::UpstreamRequest), 1);
        assert_eq!(logged("bolt", TooLarge::UpstreamRequest), BIG as u64);
    })
    .await
    .unwrap();
}
