//! Dubbo (the `dubbo://` binary protocol with hessian2 bodies).
//!
//! A request becomes `POST /{service}/{method}` from the body's leading hessian2
//! fields; its string attachments become headers (lowercased keys that are valid
//! header names; the rest in [`DubboRequestInfo`]), and the body is passed through
//! unchanged: the arguments are skipped, never decoded. Only when a filter changed the
//! headers is the attachments map at the body's end rewritten from them (keys in
//! their original spelling, non-string attachments kept as they were). Events (heartbeats) are
//! answered by the connection itself. Proxy-side failures are answered with the
//! Dubbo status byte ([`status`]) and the message as a hessian2 string body.

mod body;
mod frame;
mod http;
pub mod status;

pub use self::body::{
    Invocation, RESPONSE_NULL_VALUE, RESPONSE_NULL_VALUE_WITH_ATTACHMENTS, RESPONSE_VALUE,
    RESPONSE_VALUE_WITH_ATTACHMENTS, RESPONSE_WITH_EXCEPTION,
    RESPONSE_WITH_EXCEPTION_WITH_ATTACHMENTS,
};
pub use self::frame::{
    DubboFrame, FLAG_EVENT, FLAG_REQUEST, FLAG_TWO_WAY, HEADER_LEN, HESSIAN2, MAGIC,
    SERIALIZATION_MASK,
};
pub use self::http::{DubboRequestInfo, DubboResponseInfo};

use bytes::{Bytes, BytesMut};
use proxy_core::{HttpRequest, HttpResponse};

use crate::{
    hessian2::Writer,
    protocol::{DecodeError, EncodeError, Failure, FrameHead, FrameKind, Protocol},
    sniff::{sniff_dubbo, Sniff},
};

/// The Dubbo protocol: a [`Protocol`], served with [`crate::RpcServer`] and spoken to
/// upstreams with [`crate::RpcUpstream`].
///
/// # Example
///
/// A hessian2 invocation framed, encoded and decoded as the wire carries it, and
/// mapped onto the request routes and filters see (attachments as headers):
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use proxy_codec::{dubbo, hessian2::Writer, Dubbo, Protocol};
///
/// # fn main() -> Result<(), proxy_core::BoxError> {
/// let mut body = Writer::new();
/// body.string("2.0.2").string("org.example.Greeter").string("1.0.0").string("hello")
///     .string("Ljava/lang/String;").string("world")
///     .string_map([("path", "org.example.Greeter"), ("tenant", "gold")]);
/// let frame = dubbo::DubboFrame {
///     flags: dubbo::FLAG_REQUEST | dubbo::FLAG_TWO_WAY | dubbo::HESSIAN2,
///     status: 0,
///     request_id: 9,
///     body: Bytes::from(body.into_bytes()),
/// };
///
/// let mut wire = BytesMut::new();
/// Dubbo.encode(&frame, &mut wire)?;
/// assert_eq!(Dubbo.frame_length(&wire)?, Some(wire.len() as u64));
/// let decoded = Dubbo.decode(wire.freeze())?;
/// assert_eq!(decoded, frame);
///
/// let req = Dubbo.request_to_http(decoded)?;
/// assert_eq!(req.uri().path(), "/org.example.Greeter/hello");
/// assert_eq!(req.headers()["tenant"], "gold");
/// let info = req.extensions().get::<dubbo::DubboRequestInfo>().expect("dubbo fields");
/// assert_eq!((info.request_id, info.service_version.as_str()), (9, "1.0.0"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Dubbo;

/// What the server side keeps of a Dubbo request to answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DubboMeta {
    /// The request id.
    pub request_id: u64,
    /// The request's serialization id (the answer uses the same).
    pub serialization: u8,
}

impl Dubbo {
    /// Parses the routing fields of a hessian2 request body.
    ///
    /// # Errors
    /// A body that is not a hessian2 invocation.
    pub fn parse_invocation(body: &[u8]) -> Result<Invocation, DecodeError> {
        Ok(body::parse_request(body)?)
    }

    /// A hessian2 string body (what error responses carry).
    pub fn string_body(message: &str) -> Bytes {
        let mut w = Writer::new();
        w.string(message);
        Bytes::from(w.into_bytes())
    }
}

impl Protocol for Dubbo {
    type Frame = DubboFrame;
    type Meta = DubboMeta;

    fn name(&self) -> &'static str {
        "dubbo"
    }

    fn sniff(&self, prefix: &[u8]) -> Sniff {
        sniff_dubbo(prefix)
    }

    fn frame_length(&self, buf: &[u8]) -> Result<Option<u64>, DecodeError> {
        frame::frame_length(buf)
    }

    fn decode(&self, frame: Bytes) -> Result<DubboFrame, DecodeError> {
        frame::decode(frame)
    }

    fn encode(&self, frame: &DubboFrame, dst: &mut BytesMut) -> Result<(), EncodeError> {
        frame::encode(frame, dst)
    }

    fn kind(&self, f: &DubboFrame) -> FrameKind {
        match (f.is_request(), f.is_event(), f.is_two_way()) {
            (true, true, true) => FrameKind::Heartbeat,
            (true, true, false) | (false, true, _) => FrameKind::HeartbeatReply,
            (true, false, true) => FrameKind::Request,
            (true, false, false) => FrameKind::OneWay,
            (false, false, _) => FrameKind::Response,
        }
    }

    fn request_id(&self, f: &DubboFrame) -> u64 {
        f.request_id
    }

    fn set_request_id(&self, f: &mut DubboFrame, id: u64) {
        f.request_id = id;
    }

    fn heartbeat_reply(&self, ping: &DubboFrame) -> DubboFrame {
        DubboFrame {
            flags: FLAG_EVENT | ping.serialization(),
            status: status::OK,
            request_id: ping.request_id,
            body: Bytes::from_static(b"N"),
        }
    }

    fn heartbeat(&self) -> Option<DubboFrame> {
        Some(DubboFrame {
            flags: FLAG_REQUEST | FLAG_TWO_WAY | FLAG_EVENT | HESSIAN2,
            status: 0,
            request_id: 0,
            body: Bytes::from_static(b"N"),
        })
    }

    fn goaway(&self) -> Option<DubboFrame> {
        Some(DubboFrame::readonly_event())
    }

    fn is_goaway(&self, f: &DubboFrame) -> bool {
        f.is_readonly_event()
    }

    fn timeout(&self, req: &::http::request::Parts) -> Option<std::time::Duration> {
        let info = req.extensions.get::<DubboRequestInfo>()?;
        info.timeout_ms
            .filter(|t| *t > 0)
            .map(std::time::Duration::from_millis)
    }

    fn request_meta(&self, f: &DubboFrame) -> DubboMeta {
        DubboMeta {
            request_id: f.request_id,
            serialization: f.serialization(),
        }
    }

    fn request_to_http(&self, f: DubboFrame) -> Result<HttpRequest, DecodeError> {
        http::request_to_http(f)
    }

    fn request_from_http(
        &self,
        parts: ::http::request::Parts,
        body: Bytes,
    ) -> Result<DubboFrame, EncodeError> {
        Ok(http::request_from_http(&parts, body))
    }

    fn response_to_http(&self, f: DubboFrame) -> HttpResponse {
        http::response_to_http(f)
    }

    fn response_from_http(
        &self,
        meta: &DubboMeta,
        parts: ::http::response::Parts,
        body: Bytes,
    ) -> DubboFrame {
        http::response_from_http(meta, &parts, body)
    }

    fn error_reply(&self, meta: &DubboMeta, failure: &Failure<'_>) -> DubboFrame {
        DubboFrame {
            // The message is a hessian2 string, whatever the request used.
            flags: HESSIAN2,
            status: status::for_failure(failure.reason, failure.status),
            request_id: meta.request_id,
            body: Self::string_body(failure.message),
        }
    }

    fn frame_head(&self, head: &[u8]) -> Option<FrameHead<DubboMeta>> {
        let (flags, request_id) = frame::head_id(head)?;
        let header = DubboFrame {
            flags,
            status: 0,
            request_id,
            body: Bytes::new(),
        };
        Some(FrameHead {
            kind: self.kind(&header),
            request_id,
            meta: self.request_meta(&header),
        })
    }

    fn malformed_reply(&self, head: &[u8], err: &DecodeError) -> Option<DubboFrame> {
        let (flags, request_id) = frame::head_id(head)?;
        (flags & FLAG_REQUEST != 0 && flags & FLAG_TWO_WAY != 0 && flags & FLAG_EVENT == 0).then(
            || DubboFrame {
                flags: HESSIAN2,
                status: status::BAD_REQUEST,
                request_id,
                body: Self::string_body(&err.to_string()),
            },
        )
    }
}
