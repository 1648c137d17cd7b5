//! The multiplexing machinery on real sockets and in-memory streams, built from code
//! with typed options:
//!
//! - `server.rs`: many requests in flight on one downstream connection, heartbeats,
//!   an oversized request failing alone, bad frames and unknown Bolt commands,
//!   proxy-side failures as protocol statuses.
//! - `upstream.rs` (Bolt upstreams on 127.0.0.1): pooled connections with rewritten
//!   request ids, a closed connection failing only its own calls, timeouts, unknown
//!   ids and upstream heartbeats, connect failures, pings on idle connections and
//!   heartbeats at the interval asked, a call never written retried on a fresh
//!   connection, a dropped caller's late answer counted and not delivered to the
//!   call in flight, and the default timeout of a call with none.
//! - `dubbo_upstream.rs`: a Dubbo upstream's graceful shutdown (its read-only event
//!   moves new calls to a fresh connection) and 500 concurrent calls on one
//!   connection each getting its own answer.
//! - `lifecycle.rs`: idle, slow and draining connections, a peer that never reads.
//!
//! The in-flight table itself (a dropped caller's slot, 1000 concurrent calls
//! answered out of order, the write buffer's high-water mark) is unit-tested in
//! `src/mux/connection/tests.rs`; messages over `max_frame_bytes` on both sides are
//! in `tests/oversized/`.
#![allow(clippy::unwrap_used)]

mod dubbo_upstream;
mod lifecycle;
mod server;
mod upstream;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use proxy_codec::{
    bolt::{self, BoltFrame, BoltVersion},
    config::ServerOptions,
    dubbo::{self, DubboFrame},
    hessian2::Writer,
    metrics::CodecMetrics,
    Bolt, Protocol, RpcServer,
};
use proxy_core::{BoxHttp, HttpRequest, HttpResponse};
use proxy_test_support::rpc::read_frame;
use tokio::io::DuplexStream;

/// The limit on every test body.
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

/// A request stack that echoes the body after a delay the body names (`<ms>:<text>`)
/// and counts its calls.
pub(crate) fn echo_service(calls: Arc<AtomicUsize>) -> BoxHttp {
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
pub(crate) fn serve<P: Protocol>(
    protocol: P,
    options: ServerOptions,
    service: BoxHttp,
    metrics: Arc<CodecMetrics>,
) -> DuplexStream {
    let (client, server) = tokio::io::duplex(1 << 16);
    let srv = RpcServer::new(protocol, options)
        .unwrap()
        .with_metrics(metrics);
    tokio::spawn(async move {
        srv.serve_stream(server, service, std::future::pending())
            .await;
    });
    client
}
