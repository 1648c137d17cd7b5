//! `request_size_limit` through a real proxy, HTTP/1.1 (raw bytes) and HTTP/2 (h2c):
//! a `content-length` over the limit answered 413 before any body byte, chunked and HTTP/2 bodies cut with 413 once they run over, also after
//! their first bytes went upstream (the upstream never gets a whole request), bodies
//! within the limit untouched, and the counters.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::{
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use common::{config, listener, start, upstream};
use http_body::Frame;
use proxy_test_support::{
    client::{self, raw},
    free_addr, prometheus, with_timeout, TestServer,
};
use tokio::io::AsyncWriteExt;

const LIMIT: usize = 1000;

fn proxy(up: SocketAddr) -> (TestServer, SocketAddr) {
    let admin = free_addr();
    let filters =
        format!("[{{typed: request_size_limit, config: {{name: size, max_bytes: {LIMIT}}}}}]");
    let yaml = format!(
        "admin: {{ address: \"{admin}\" }}\n{}",
        config(&[listener("edge", &filters, "b")], &[("b", up)])
    );
    (start(&yaml), admin)
}

async fn rejected(admin: SocketAddr, reason: &str) -> f64 {
    let text = client::get(admin, "/stats/prometheus", &[]).await.text();
    let series = format!(
        "proxy_filters_request_size_limit_rejected_total{{filter=\"size\",reason=\"{reason}\"}}"
    );
    prometheus::sample(&text, &series).unwrap_or_else(|| panic!("{series}: {text}"))
}

fn chunk(size: usize) -> Vec<u8> {
    let mut out = format!("{size:x}\r\n").into_bytes();
    out.extend(std::iter::repeat_n(b'x', size));
    out.extend_from_slice(b"\r\n");
    out
}

const CHUNKED_HEAD: &[u8] =
    b"POST /up HTTP/1.1\r\nhost: edge\r\ntransfer-encoding: chunked\r\n\r\n";

#[tokio::test]
async fn content_length_over_the_limit_is_refused_before_the_body() {
    with_timeout(Duration::from_secs(30), async {
        let up = upstream("backend", Duration::ZERO);
        let (proxy, admin) = proxy(up.addr);
        let addr = proxy.addr("edge");
        // Only the head is sent: the 413 needs none of the body. (The HTTP/1.1 server
        // of proxy-core answers `100 Continue` as it reads the head, before filters.)
        let head = b"POST /up HTTP/1.1\r\nhost: edge\r\ncontent-length: 5000\r\nexpect: 100-continue\r\n\r\n";
        let resp = String::from_utf8(raw::exchange(addr, head, Duration::from_millis(500)).await).unwrap();
        let final_status = resp.trim_start_matches("HTTP/1.1 100 Continue\r\n\r\n");
        assert!(final_status.starts_with("HTTP/1.1 413"), "{resp}");
        assert!(resp.to_ascii_lowercase().contains("x-proxy-error: request_too_large"), "{resp}");

        // HTTP/2 with a content-length over the limit.
        let req = client::build(addr, http::Method::POST, "/up", &[], Bytes::from(vec![b'y'; LIMIT + 1])).unwrap();
        assert_eq!(client::send_h2c(addr, req).await.unwrap().status, 413);

        // At the limit exactly, both go through whole.
        let req = client::build(addr, http::Method::POST, "/up", &[], Bytes::from(vec![b'y'; LIMIT])).unwrap();
        assert_eq!(client::send(addr, req).await.unwrap().status, 200);
        let req = client::build(addr, http::Method::POST, "/up", &[], Bytes::from(vec![b'y'; LIMIT])).unwrap();
        assert_eq!(client::send_h2c(addr, req).await.unwrap().status, 200);
        assert_eq!(up.hits(), 2);
        assert!(up.requests().iter().all(|r| r.body.len() == LIMIT));
        assert_eq!(rejected(admin, "content_length").await, 2.0);
    })
    .await;
}

#[tokio::test]
async fn chunked_bodies_are_cut_past_the_limit() {
    with_timeout(Duration::from_secs(30), async {
        let up = upstream("backend", Duration::ZERO);
        let (proxy, admin) = proxy(up.addr);
        let addr = proxy.addr("edge");

        let mut within = CHUNKED_HEAD.to_vec();
        within.extend(chunk(600));
        within.extend(chunk(400));
        within.extend_from_slice(b"0\r\n\r\n");
        let resp =
            String::from_utf8(raw::exchange(addr, &within, Duration::from_millis(500)).await)
                .unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert_eq!(up.requests()[0].body.len(), LIMIT);

        // The head and a first chunk go upstream, then the body runs over.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(CHUNKED_HEAD).await.unwrap();
        s.write_all(&chunk(600)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        s.write_all(&chunk(600)).await.unwrap();
        s.write_all(b"0\r\n\r\n").await.unwrap();
        let resp =
            String::from_utf8(raw::read_idle(&mut s, Duration::from_millis(500)).await).unwrap();
        assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
        assert!(
            resp.to_ascii_lowercase()
                .contains("x-proxy-error: request_too_large"),
            "{resp}"
        );
        assert_eq!(
            up.requests().len(),
            1,
            "the upstream never got a whole request"
        );
        assert_eq!(rejected(admin, "streamed").await, 1.0);
    })
    .await;
}

/// `n` DATA frames of `size` bytes, of unknown total length (no content-length).
struct Chunks {
    n: usize,
    size: usize,
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.n == 0 {
            return Poll::Ready(None);
        }
        self.n -= 1;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'z'; self.size])))))
    }
}

async fn h2_stream(addr: SocketAddr, n: usize, size: usize) -> http::StatusCode {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::post(format!("http://{addr}/up"))
        .body(Chunks { n, size })
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    resp.status()
}

#[tokio::test]
async fn http2_bodies_are_cut_past_the_limit() {
    with_timeout(Duration::from_secs(30), async {
        let up = upstream("backend", Duration::ZERO);
        let (proxy, admin) = proxy(up.addr);
        let addr = proxy.addr("edge");
        assert_eq!(h2_stream(addr, 2, 500).await, 200);
        assert_eq!(up.requests()[0].body.len(), LIMIT);
        assert!(
            up.requests()[0].header("content-length").is_none(),
            "streamed"
        );
        assert_eq!(h2_stream(addr, 3, 500).await, 413);
        assert_eq!(
            up.requests().len(),
            1,
            "the upstream never got a whole request"
        );
        assert_eq!(rejected(admin, "streamed").await, 1.0);
    })
    .await;
}

#[test]
fn a_zero_limit_is_refused_naming_the_field() {
    let yaml = config(
        &[listener(
            "edge",
            "[{typed: request_size_limit, config: {max_bytes: 0}}]",
            "b",
        )],
        &[("b", free_addr())],
    );
    let err = common::try_start(&yaml).err().unwrap();
    assert!(err.contains("http_filters[0].config.max_bytes"), "{err}");
}
