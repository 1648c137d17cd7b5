//! Peers speaking proxy-codec's RPC protocols (Bolt, Dubbo), for the tests that route
//! RPC through the proxy (feature `codec`).

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use proxy_codec::{FrameKind, Protocol};
use tokio::io::{AsyncRead, AsyncWriteExt};

use crate::{
    client::raw,
    upstream::{spawn_raw, Upstream},
};

/// Reads one whole frame of `p` from `s` (`buf` keeps what was read past it); `None`
/// when the peer closes (or reading fails) first.
///
/// # Panics
/// When the bytes are not a frame of `p`.
pub async fn read_frame<P: Protocol>(
    p: &P,
    s: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
) -> Option<P::Frame> {
    let frame = raw::read_frame(s, buf, |b| {
        let len = p.frame_length(b).expect("the start of a frame");
        len.map(|n| usize::try_from(n).expect("a frame length that fits in memory"))
    })
    .await?;
    Some(p.decode(frame).expect("a well-formed frame"))
}

/// An RPC server speaking `p` on `127.0.0.1:0`: answers every request with the body
/// `<name> <path> <request body>` (the path is `/{service}/{method}`) and records it
/// ([`Upstream::requests`]); answers heartbeats; ignores one-way requests.
///
/// # Panics
/// In the server's task, when a frame does not decode or encode.
pub fn upstream<P: Protocol + Copy>(p: P, name: &'static str) -> Upstream {
    spawn_raw(move |mut s, stats| async move {
        let mut buf = BytesMut::new();
        while let Some(f) = read_frame(&p, &mut s, &mut buf).await {
            let reply = match p.kind(&f) {
                FrameKind::Heartbeat => p.heartbeat_reply(&f),
                FrameKind::Request => {
                    let meta = p.request_meta(&f);
                    let req = p.request_to_http(f).expect("a request readable as HTTP");
                    let (parts, body) = req.into_parts();
                    let body = body.collect().await.expect("the request body").to_bytes();
                    let text = format!(
                        "{name} {} {}",
                        parts.uri.path(),
                        String::from_utf8_lossy(&body)
                    );
                    stats.record(&parts, body);
                    let (head, ()) = http::Response::new(()).into_parts();
                    p.response_from_http(&meta, head, Bytes::from(text))
                }
                _ => continue,
            };
            let mut out = BytesMut::new();
            p.encode(&reply, &mut out).expect("encode the answer");
            if s.write_all(&out).await.is_err() {
                return;
            }
        }
    })
}
