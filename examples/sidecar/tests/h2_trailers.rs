//! Trailers pass through: gRPC-style HTTP/2 (h2c client, `protocol: auto` listener,
//! `protocol: http2` cluster) and HTTP/1.1 chunked trailers, and across the two.

use crate::common;

use std::{
    collections::VecDeque,
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use common::*;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use proxy_test_support::{
    client::raw,
    upstream::{spawn_raw, RespBody},
    with_timeout, Upstream,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const LIMIT: Duration = Duration::from_secs(60);

/// A gRPC message frame: uncompressed, 4-byte big-endian length, payload.
fn grpc_frame(payload: &[u8]) -> Bytes {
    let mut v = vec![0u8];
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v.into()
}

/// A response body made of the given frames (data, then optionally trailers).
fn frames_body(frames: Vec<Frame<Bytes>>) -> RespBody {
    BodyExt::boxed(Frames(frames.into()))
}

struct Frames(VecDeque<Frame<Bytes>>);

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

/// An upstream (HTTP/1.1 and h2c) answering every request like a gRPC server: a
/// `content-type: application/grpc` head, two data frames, then the trailers
/// `grpc-status: 0` and `grpc-message: all good`.
fn grpc_upstream() -> Upstream {
    Upstream::http(|_| {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        trailers.insert("grpc-message", HeaderValue::from_static("all good"));
        Response::builder()
            .header("content-type", "application/grpc")
            .body(frames_body(vec![
                Frame::data(grpc_frame(b"reply-")),
                Frame::data(grpc_frame(b"part-two")),
                Frame::trailers(trailers),
            ]))
            .expect("response")
    })
}

/// Raw HTTP/1.1: answers every request head (requests without a body) with the
/// bytes of `response` verbatim, keeping the connection open; counts the requests.
fn raw_h1(response: &'static [u8]) -> Upstream {
    spawn_raw(move |mut s, stats| async move {
        let mut buf = Vec::new();
        loop {
            let end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                let mut chunk = [0u8; 4096];
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            buf.drain(..end);
            stats.hit();
            if s.write_all(response).await.is_err() {
                return;
            }
        }
    })
}

/// A chunked HTTP/1.1 response with a trailer section, written by a raw upstream.
const CHUNKED_WITH_TRAILERS: &[u8] = b"HTTP/1.1 200 OK\r\n\
    Content-Type: text/plain\r\n\
    Transfer-Encoding: chunked\r\n\
    Trailer: x-checksum, x-row-count\r\n\
    \r\n\
    6\r\nhello \r\n\
    7\r\nchunked\r\n\
    0\r\n\
    x-checksum: abc123\r\n\
    x-row-count: 2\r\n\
    \r\n";

/// What an h2 client got: status, headers, body and trailers.
struct H2Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    trailers: Option<HeaderMap>,
}

/// A request with `te: trailers` over h2c prior knowledge (a POST with `body`, or a GET
/// when it is empty), read whole with its trailers.
async fn h2_call(addr: SocketAddr, path: &str, body: Bytes) -> H2Reply {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (send, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let mut send = send.ready().await.expect("h2 ready");
    let method = if body.is_empty() {
        http::Method::GET
    } else {
        http::Method::POST
    };
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request");
    let (resp, mut stream) = send
        .send_request(req, body.is_empty())
        .expect("send_request");
    if !body.is_empty() {
        stream.send_data(body, true).expect("send_data");
    }
    let resp = tokio::time::timeout(Duration::from_secs(10), resp)
        .await
        .expect("response head within 10 s")
        .expect("response head");
    let (parts, mut recv) = resp.into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.expect("response data");
        let _ = recv.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = recv.trailers().await.expect("response trailers");
    drop(send);
    conn.abort();
    H2Reply {
        status: parts.status,
        headers: parts.headers,
        body: data.into(),
        trailers,
    }
}

/// A GET with `TE: trailers` over raw HTTP/1.1, read whole.
async fn h1_call(addr: SocketAddr, path: &str) -> raw::RawResponse {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: test\r\nTE: trailers\r\nConnection: TE, close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        raw::read_response(&mut s, &mut buf),
    )
    .await
    .expect("response within 10 s")
    .expect("response")
}

async fn sidecar_for(up: &Upstream, protocol: &str) -> (Sidecar, ConfigBuilder) {
    let mut cfg = ConfigBuilder::new()
        .routes(vec![route("all", "/", "up", "")])
        .cluster(cluster("up", up.addr, &format!("protocol: {protocol}")));
    assert_eq!(cfg.protocol, "auto");
    let sc = Sidecar::start_with(&mut cfg).await;
    (sc, cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_style_h2c_response_trailers_reach_the_client() {
    with_timeout(LIMIT, async {
        let up = grpc_upstream();
        let (sc, cfg) = sidecar_for(&up, "http2").await;
        let request = grpc_frame(b"ping");
        let r = h2_call(cfg.listen, "/pkg.Echo/Say", request.clone()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", sc.logs());
        assert_eq!(
            r.headers.get("content-type").map(HeaderValue::as_bytes),
            Some(&b"application/grpc"[..])
        );
        let mut want = grpc_frame(b"reply-").to_vec();
        want.extend_from_slice(&grpc_frame(b"part-two"));
        assert_eq!(r.body, want, "both data frames arrive");
        let trailers = r.trailers.expect("trailers after the body");
        assert_eq!(
            trailers.get("grpc-status").map(|v| v.as_bytes()),
            Some(&b"0"[..])
        );
        assert_eq!(
            trailers.get("grpc-message").map(|v| v.as_bytes()),
            Some(&b"all good"[..])
        );

        let seen = up.requests();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].version, http::Version::HTTP_2, "h2 to the cluster");
        assert_eq!(
            seen[0].header("te"),
            Some("trailers"),
            "te: trailers forwarded"
        );
        assert_eq!(seen[0].body, request, "the request body arrives whole");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_chunked_trailers_reach_an_http1_client() {
    with_timeout(LIMIT, async {
        let up = raw_h1(CHUNKED_WITH_TRAILERS);
        let (sc, cfg) = sidecar_for(&up, "http1").await;
        let r = h1_call(cfg.listen, "/report").await;
        assert_eq!(r.status, 200, "{}", sc.logs());
        assert!(
            r.chunked,
            "a body with trailers goes chunked: {:?}",
            r.headers
        );
        assert_eq!(r.text(), "hello chunked");
        assert_eq!(
            r.trailer("x-checksum"),
            Some("abc123"),
            "trailers: {:?}",
            r.trailers
        );
        assert_eq!(r.trailer("x-row-count"), Some("2"));
        assert_eq!(up.hits(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_upstream_trailers_reach_an_http1_client() {
    with_timeout(LIMIT, async {
        let up = grpc_upstream();
        let (sc, cfg) = sidecar_for(&up, "http2").await;
        let r = h1_call(cfg.listen, "/pkg.Echo/Say").await;
        assert_eq!(r.status, 200, "{}", sc.logs());
        assert!(r.chunked, "trailers need a chunked body: {:?}", r.headers);
        assert_eq!(
            r.trailer("grpc-status"),
            Some("0"),
            "trailers: {:?}",
            r.trailers
        );
        assert_eq!(r.trailer("grpc-message"), Some("all good"));
        let seen = up.requests();
        assert_eq!(
            seen[0].header("te"),
            Some("trailers"),
            "te: trailers forwarded"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_chunked_trailers_reach_an_h2_client() {
    with_timeout(LIMIT, async {
        let up = raw_h1(CHUNKED_WITH_TRAILERS);
        let (sc, cfg) = sidecar_for(&up, "http1").await;
        let r = h2_call(cfg.listen, "/report", Bytes::new()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", sc.logs());
        assert_eq!(r.body, "hello chunked");
        let trailers = r.trailers.expect("trailers after the body");
        assert_eq!(
            trailers.get("x-checksum").map(|v| v.as_bytes()),
            Some(&b"abc123"[..])
        );
    })
    .await;
}
