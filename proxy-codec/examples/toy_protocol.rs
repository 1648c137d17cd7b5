//! A protocol of your own, proxied like Bolt and Dubbo: implement
//! [`proxy_codec::Protocol`] for its frames and register it by name.
//!
//! The toy protocol: every frame is `length: u32 | kind: u8 | id: u32 | path_len: u16 |
//! path | payload`, big-endian, `length` counting what follows it; kinds are
//! 0 request, 1 response, 2 ping, 3 pong. A request's path is `/{service}/{method}`
//! and its payload the body; a response's "path" holds its status as text.
//!
//! This example runs a toy upstream, a proxy with a `toy` listener routing to a `toy`
//! cluster, and one client call through it:
//!
//! ```sh
//! cargo run -p proxy-codec --example toy_protocol
//! ```
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{Request, Response, StatusCode};
use proxy_codec::{DecodeError, EncodeError, Failure, FrameKind, Protocol, Sniff};
use proxy_core::{config::Config, Body, HttpRequest, HttpResponse, Registry, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One toy frame.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ToyFrame {
    kind: u8,
    id: u32,
    path: Bytes,
    payload: Bytes,
}

/// The toy protocol: no state, so `Copy`.
#[derive(Debug, Clone, Copy)]
struct Toy;

impl Protocol for Toy {
    type Frame = ToyFrame;
    /// To answer a request, the server side needs its id only.
    type Meta = u32;

    fn name(&self) -> &'static str {
        "toy"
    }

    fn sniff(&self, prefix: &[u8]) -> Sniff {
        // Frames start with a length whose top byte is 0, then a kind of 0..=3.
        match prefix {
            [0, _, _, _, kind, ..] if *kind <= 3 => Sniff::Match,
            [0, ..] if prefix.len() < 5 => Sniff::NeedMore,
            [] => Sniff::NeedMore,
            _ => Sniff::NoMatch,
        }
    }

    fn frame_length(&self, buf: &[u8]) -> Result<Option<u64>, DecodeError> {
        // Read from the fixed header only: the machinery checks it against
        // `max_frame_bytes` before buffering the rest.
        Ok(buf
            .get(..4)
            .map(|b| 4 + u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))))
    }

    fn decode(&self, mut b: Bytes) -> Result<ToyFrame, DecodeError> {
        if b.len() < 11 {
            return Err(DecodeError::Malformed("short toy frame"));
        }
        b.advance(4);
        let kind = b.get_u8();
        let id = b.get_u32();
        let path_len = usize::from(b.get_u16());
        if kind > 3 || b.len() < path_len {
            return Err(DecodeError::Malformed("bad toy frame"));
        }
        let path = b.split_to(path_len);
        Ok(ToyFrame {
            kind,
            id,
            path,
            payload: b,
        })
    }

    fn encode(&self, f: &ToyFrame, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let path_len = u16::try_from(f.path.len()).map_err(|_| EncodeError::TooLong("path"))?;
        let len = u32::try_from(7 + f.path.len() + f.payload.len())
            .map_err(|_| EncodeError::TooLong("payload"))?;
        dst.put_u32(len);
        dst.put_u8(f.kind);
        dst.put_u32(f.id);
        dst.put_u16(path_len);
        dst.put_slice(&f.path);
        dst.put_slice(&f.payload);
        Ok(())
    }

    fn kind(&self, f: &ToyFrame) -> FrameKind {
        match f.kind {
            0 => FrameKind::Request,
            1 => FrameKind::Response,
            2 => FrameKind::Heartbeat,
            _ => FrameKind::HeartbeatReply,
        }
    }

    fn request_id(&self, f: &ToyFrame) -> u64 {
        u64::from(f.id)
    }

    fn set_request_id(&self, f: &mut ToyFrame, id: u64) {
        f.id = id as u32;
    }

    fn heartbeat_reply(&self, ping: &ToyFrame) -> ToyFrame {
        ToyFrame {
            kind: 3,
            id: ping.id,
            path: Bytes::new(),
            payload: Bytes::new(),
        }
    }

    fn request_meta(&self, f: &ToyFrame) -> u32 {
        f.id
    }

    fn request_to_http(&self, f: ToyFrame) -> Result<HttpRequest, DecodeError> {
        let path = std::str::from_utf8(&f.path).map_err(|_| DecodeError::Malformed("path"))?;
        Request::post(path)
            .body(Body::from(f.payload))
            .map_err(|_| DecodeError::Malformed("path is not a URI path"))
    }

    fn request_from_http(
        &self,
        parts: http::request::Parts,
        body: Bytes,
    ) -> Result<ToyFrame, EncodeError> {
        Ok(ToyFrame {
            kind: 0,
            id: 0,
            path: Bytes::from(parts.uri.path().to_owned()),
            payload: body,
        })
    }

    fn response_to_http(&self, f: ToyFrame) -> HttpResponse {
        let status = std::str::from_utf8(&f.path)
            .ok()
            .and_then(|s| s.parse::<StatusCode>().ok());
        let mut resp = Response::new(Body::from(f.payload));
        *resp.status_mut() = status.unwrap_or(StatusCode::BAD_GATEWAY);
        resp
    }

    fn response_from_http(&self, id: &u32, parts: http::response::Parts, body: Bytes) -> ToyFrame {
        let status = Bytes::from(parts.status.as_u16().to_string());
        ToyFrame {
            kind: 1,
            id: *id,
            path: status,
            payload: body,
        }
    }

    fn error_reply(&self, id: &u32, failure: &Failure<'_>) -> ToyFrame {
        let status = Bytes::from(failure.status.as_u16().to_string());
        let text = format!("{}: {}", failure.reason, failure.message);
        ToyFrame {
            kind: 1,
            id: *id,
            path: status,
            payload: Bytes::from(text),
        }
    }
}

/// An upstream speaking toy: answers `200` with `hello, <payload>`.
async fn toy_upstream() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = BytesMut::new();
                while let Some(f) = read(&mut s, &mut buf).await {
                    let mut hello = b"hello, ".to_vec();
                    hello.extend_from_slice(&f.payload);
                    let answer = ToyFrame {
                        kind: 1,
                        id: f.id,
                        path: Bytes::from("200"),
                        payload: hello.into(),
                    };
                    let mut out = BytesMut::new();
                    Toy.encode(&answer, &mut out).unwrap();
                    s.write_all(&out).await.unwrap();
                }
            });
        }
    });
    addr
}

async fn read(s: &mut tokio::net::TcpStream, buf: &mut BytesMut) -> Option<ToyFrame> {
    loop {
        if let Some(n) = Toy.frame_length(buf).unwrap() {
            if buf.len() as u64 >= n {
                return Toy.decode(buf.split_to(n as usize).freeze()).ok();
            }
        }
        if s.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let upstream = toy_upstream().await;
    let yaml = format!(
        r#"
listeners:
  - name: toy
    address: 127.0.0.1:0
    protocol: toy
    protocol_options:
      toy: {{ max_frame_bytes: 64KiB }}
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {{ path: {{ prefix: "/greeter/" }} }}
            cluster: greeters
clusters:
  - name: greeters
    protocol: toy
    endpoints: ["{upstream}"]
"#
    );
    let mut registry = Registry::default();
    proxy_codec::register_protocol(&mut registry, "toy", Toy);
    let server = Server::new(Config::from_yaml(&yaml).unwrap(), registry).unwrap();
    let runner = server.clone();
    std::thread::spawn(move || runner.run_until(std::future::pending()).unwrap());
    while server.listener_addresses().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let addr = server.listener_addresses()[0].1.clone();

    let mut client = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let call = ToyFrame {
        kind: 0,
        id: 42,
        path: Bytes::from("/greeter/hello"),
        payload: Bytes::from("toy"),
    };
    let mut out = BytesMut::new();
    Toy.encode(&call, &mut out).unwrap();
    client.write_all(&out).await.unwrap();
    let answer = read(&mut client, &mut BytesMut::new()).await.unwrap();
    assert_eq!(answer.id, 42);
    println!(
        "status {} body {:?}",
        String::from_utf8_lossy(&answer.path),
        String::from_utf8_lossy(&answer.payload)
    );
    server.shutdown();
}
