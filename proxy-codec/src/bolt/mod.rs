//! SOFARPC Bolt, protocol codes 1 (v1) and 2 (v2, with the optional CRC32 trailer).
//!
//! A request becomes `POST /{service}/{method}`: the service from the header map's
//! `sofa_head_target_service` (or `service`), the method from `sofa_head_method_name`,
//! falling back to the hessian2 `SofaRequest` in the content (sofa-rpc-node leaves
//! the method out of the header map). Header-map entries whose lowercased key is a
//! valid header name become headers; the others, and the protocol fields, are in the
//! [`BoltRequestInfo`] extension; the content is the body, unchanged. Responses carry
//! their status both as an HTTP status ([`status`]) and exactly in [`BoltResponseInfo`].

mod content;
mod frame;
mod header_map;
mod http;
pub mod status;

pub use self::content::SOFA_REQUEST;
pub use self::frame::{
    BoltFrame, BoltVersion, CMD_HEARTBEAT, CMD_REQUEST, CMD_RESPONSE, CODEC_HESSIAN2, PROTOCOL_V1,
    PROTOCOL_V2, SWITCH_CRC, TYPE_ONEWAY, TYPE_REQUEST, TYPE_RESPONSE,
};
pub use self::http::{BoltRequestInfo, BoltResponseInfo, HeaderExtras, SOFA_RESPONSE};

use bytes::{Bytes, BytesMut};
use proxy_core::{HttpRequest, HttpResponse};

use crate::{
    protocol::{DecodeError, EncodeError, Failure, FrameHead, FrameKind, Protocol},
    sniff::{sniff_bolt, Sniff},
};

/// The Bolt protocol (v1 and v2): a [`Protocol`], served with [`crate::RpcServer`]
/// and spoken to upstreams with [`crate::RpcUpstream`].
///
/// # Example
///
/// A call built from an `http::Request`, encoded and decoded as the wire carries it
/// (v2 with its CRC32), and mapped back onto the request routes and filters see:
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use proxy_codec::{bolt, Bolt, Protocol, RpcInfo};
///
/// # fn main() -> Result<(), proxy_core::BoxError> {
/// let req = http::Request::post("/com.example.Echo:1.0/echo")
///     .header("x-trace", "t1")
///     .body(())?;
/// let mut frame = Bolt.request_from_http(req.into_parts().0, Bytes::from_static(b"payload"))?;
/// frame.version = bolt::BoltVersion::V2 { version: 2, switch: bolt::SWITCH_CRC };
/// frame.request_id = 1;
///
/// let mut wire = BytesMut::new();
/// Bolt.encode(&frame, &mut wire)?;
/// assert_eq!(Bolt.frame_length(&wire)?, Some(wire.len() as u64));
/// let decoded = Bolt.decode(wire.freeze())?;
/// assert_eq!(decoded, frame);
///
/// let req = Bolt.request_to_http(decoded)?;
/// assert_eq!(req.uri().path(), "/com.example.Echo:1.0/echo");
/// assert_eq!(req.headers()["x-trace"], "t1");
/// let info = req.extensions().get::<bolt::BoltRequestInfo>().expect("bolt fields");
/// assert_eq!(info.request_id, 1);
/// let rpc = req.extensions().get::<RpcInfo>().expect("neutral rpc facts");
/// assert_eq!((&*rpc.service, &*rpc.method), ("com.example.Echo:1.0", "echo"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Bolt;

/// What the server side keeps of a Bolt request to answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoltMeta {
    /// v1 or v2 (the answer uses the same).
    pub version: BoltVersion,
    /// The request id.
    pub request_id: u32,
    /// The codec of the request.
    pub codec: u8,
    /// The command version.
    pub ver2: u8,
}

impl Bolt {
    /// Encodes a header map from `(key, value)` pairs; `None` values are nulls.
    pub fn header_map<'a>(entries: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> Bytes {
        let mut b = BytesMut::new();
        for (k, v) in entries {
            header_map::put(&mut b, k.as_bytes(), v.map(str::as_bytes));
        }
        b.freeze()
    }

    /// Parses a header map into `(key, value)` pairs.
    ///
    /// # Errors
    /// A truncated map.
    pub fn parse_header_map(map: Bytes) -> Result<Vec<(Bytes, Option<Bytes>)>, DecodeError> {
        let mut out = Vec::new();
        header_map::parse(map, |k, v| out.push((k, v)))?;
        Ok(out)
    }

    fn reply_frame(meta: &BoltMeta, status: u16) -> BoltFrame {
        BoltFrame {
            version: meta.version,
            rpc_type: TYPE_RESPONSE,
            cmd_code: CMD_RESPONSE,
            ver2: meta.ver2,
            request_id: meta.request_id,
            codec: meta.codec,
            timeout: 0,
            status,
            class_name: Bytes::new(),
            header: Bytes::new(),
            content: Bytes::new(),
        }
    }
}

fn kind(rpc_type: u8, cmd_code: u16) -> FrameKind {
    match (rpc_type, cmd_code) {
        (TYPE_RESPONSE, CMD_HEARTBEAT) => FrameKind::HeartbeatReply,
        (TYPE_RESPONSE, _) => FrameKind::Response,
        (_, CMD_HEARTBEAT) => FrameKind::Heartbeat,
        (TYPE_ONEWAY, _) => FrameKind::OneWay,
        _ => FrameKind::Request,
    }
}

impl Protocol for Bolt {
    type Frame = BoltFrame;
    type Meta = BoltMeta;

    fn name(&self) -> &'static str {
        "bolt"
    }

    fn sniff(&self, prefix: &[u8]) -> Sniff {
        sniff_bolt(prefix)
    }

    fn frame_length(&self, buf: &[u8]) -> Result<Option<u64>, DecodeError> {
        frame::frame_length(buf)
    }

    fn decode(&self, frame: Bytes) -> Result<BoltFrame, DecodeError> {
        frame::decode(frame)
    }

    fn encode(&self, frame: &BoltFrame, dst: &mut BytesMut) -> Result<(), EncodeError> {
        frame::encode(frame, dst)
    }

    fn kind(&self, f: &BoltFrame) -> FrameKind {
        kind(f.rpc_type, f.cmd_code)
    }

    fn request_id(&self, f: &BoltFrame) -> u64 {
        u64::from(f.request_id)
    }

    fn set_request_id(&self, f: &mut BoltFrame, id: u64) {
        f.request_id = id as u32;
    }

    fn heartbeat_reply(&self, ping: &BoltFrame) -> BoltFrame {
        BoltFrame {
            cmd_code: CMD_HEARTBEAT,
            ..Self::reply_frame(&self.request_meta(ping), status::SUCCESS)
        }
    }

    fn request_meta(&self, f: &BoltFrame) -> BoltMeta {
        BoltMeta {
            version: f.version,
            request_id: f.request_id,
            codec: f.codec,
            ver2: f.ver2,
        }
    }

    fn request_to_http(&self, f: BoltFrame) -> Result<HttpRequest, DecodeError> {
        http::request_to_http(f)
    }

    fn request_from_http(
        &self,
        parts: ::http::request::Parts,
        body: Bytes,
    ) -> Result<BoltFrame, EncodeError> {
        http::request_from_http(parts, body)
    }

    fn response_to_http(&self, f: BoltFrame) -> HttpResponse {
        http::response_to_http(f)
    }

    fn response_from_http(
        &self,
        meta: &BoltMeta,
        parts: ::http::response::Parts,
        body: Bytes,
    ) -> BoltFrame {
        http::response_from_http(meta, parts, body)
    }

    fn error_reply(&self, meta: &BoltMeta, failure: &Failure<'_>) -> BoltFrame {
        let code = status::for_failure(failure.reason, failure.status);
        let mut f = Self::reply_frame(meta, code);
        // No content: clients build the error from the status alone, and a serialized
        // exception would have to match the caller's hessian dialect (sofa-bolt-node
        // reads the 2.0 draft, Java the final spec). The reason travels in the header
        // map for logs and tracing.
        f.header = Self::header_map([
            ("x-proxy-error", Some(failure.reason)),
            ("x-proxy-error-message", Some(failure.message)),
        ]);
        f
    }

    fn heartbeat(&self) -> Option<BoltFrame> {
        Some(BoltFrame {
            version: BoltVersion::V1,
            rpc_type: TYPE_REQUEST,
            cmd_code: CMD_HEARTBEAT,
            ver2: 1,
            request_id: 0,
            codec: CODEC_HESSIAN2,
            timeout: 0,
            status: 0,
            class_name: Bytes::new(),
            header: Bytes::new(),
            content: Bytes::new(),
        })
    }

    fn timeout(&self, req: &::http::request::Parts) -> Option<std::time::Duration> {
        let info = req.extensions.get::<BoltRequestInfo>()?;
        u64::try_from(info.timeout)
            .ok()
            .filter(|t| *t > 0)
            .map(std::time::Duration::from_millis)
    }

    fn frame_head(&self, head: &[u8]) -> Option<FrameHead<BoltMeta>> {
        let (version, rpc_type, request_id, codec) = frame::head_id(head)?;
        // `cmd_code` and `ver2` follow the type byte: v1 at 2..5, v2 at 3..6.
        let at = if version == BoltVersion::V1 { 2 } else { 3 };
        let cmd_code = u16::from_be_bytes([*head.get(at)?, *head.get(at + 1)?]);
        let ver2 = *head.get(at + 2)?;
        Some(FrameHead {
            kind: kind(rpc_type, cmd_code),
            request_id: u64::from(request_id),
            meta: BoltMeta {
                version,
                request_id,
                codec,
                ver2,
            },
        })
    }

    fn malformed_reply(&self, head: &[u8], _err: &DecodeError) -> Option<BoltFrame> {
        let (version, rpc_type, request_id, codec) = frame::head_id(head)?;
        (rpc_type == TYPE_REQUEST).then(|| {
            Self::reply_frame(
                &BoltMeta {
                    version,
                    request_id,
                    codec,
                    ver2: 1,
                },
                status::CODEC_EXCEPTION,
            )
        })
    }
}
