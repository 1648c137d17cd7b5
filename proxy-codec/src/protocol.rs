//! The plug-in point: what a request/response protocol implements so that the generic
//! machinery ([`crate::mux`]) can serve it on a listener and speak it to upstreams.
//!
//! A protocol describes its frames; the machinery does the rest: buffering with the
//! frame-length cap checked from the fixed header before anything is buffered, many
//! requests in flight on one connection, heartbeats answered locally, request ids
//! rewritten on pooled upstream connections, protocol-correct error replies for
//! proxy-side failures and malformed frames. Requests are mapped onto
//! `http::Request<Body>` (DESIGN decision 1), so routes, filters and balancers treat
//! them like any HTTP request.
//!
//! # Adding a protocol
//!
//! 1. Implement [`Protocol`] for a type describing the frames (pure functions: no I/O).
//! 2. Register it under a name: [`crate::register_protocol`]`(&mut registry, "toy", Toy)`
//!    gives listeners `protocol: toy` (and `auto` detection through
//!    [`Protocol::sniff`]) and clusters `protocol: toy`, with `protocol_options`
//!    parsed as [`crate::config::ServerOptions`] / [`crate::config::UpstreamOptions`].
//! 3. Route on `/{service}/{method}` and headers like any HTTP request.
//!
//! The worked example, `examples/toy_protocol.rs` (a length-prefixed protocol proxied
//! end to end; `cargo run -p proxy-codec --example toy_protocol`):
#![doc = concat!("```rust,no_run\n", include_str!("../examples/toy_protocol.rs"), "\n```")]

use std::fmt;

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use proxy_core::{HttpRequest, HttpResponse};

pub use crate::sniff::Sniff;

/// What a decoded frame is, as far as the machinery cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A request that expects a response.
    Request,
    /// A request that expects no response.
    OneWay,
    /// A response to a request.
    Response,
    /// A keep-alive probe that expects a [`Protocol::heartbeat_reply`].
    Heartbeat,
    /// An answer to a keep-alive probe, or an event that needs no answer.
    HeartbeatReply,
}

/// A failure of the proxy itself (no route, upstream down, timeout, overload, ...),
/// to be answered in the protocol's own terms.
#[derive(Debug, Clone, Copy)]
pub struct Failure<'a> {
    /// The machine-readable reason: the `x-proxy-error` value (`no_route`,
    /// `no_endpoints`, `connect_failure`, `upstream_timeout`, `overflow`,
    /// `upstream_reset`, `bad_request`, ...) or `malformed` for an undecodable frame.
    pub reason: &'a str,
    /// The HTTP status the proxy chose for it.
    pub status: StatusCode,
    /// A human-readable message.
    pub message: &'a str,
}

/// Why bytes could not be decoded as a frame.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The fixed header declares a frame longer than the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The declared length.
        len: u64,
        /// The configured maximum.
        max: usize,
    },
    /// The bytes do not start a frame of this protocol.
    #[error("not a {0} frame")]
    BadMagic(&'static str),
    /// The frame's checksum does not match.
    #[error("frame checksum mismatch")]
    Checksum,
    /// The frame is structurally wrong.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// A hessian2 payload could not be read.
    #[error("malformed hessian2 payload")]
    Hessian(#[from] crate::hessian2::HessianError),
}

/// Why a request or response could not be turned into a frame.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A field does not fit the protocol's fixed-size length or id field.
    #[error("{0} too long for the frame format")]
    TooLong(&'static str),
    /// The request lacks what the protocol needs.
    #[error("cannot encode request: {0}")]
    Invalid(&'static str),
}

/// A request/response protocol with request ids, spoken over one byte stream.
///
/// Implementations are pure and synchronous: no I/O, no clock. Requests and responses
/// become `http::Request<Body>` / `http::Response<Body>` with the service and method in
/// the path (`/{service}/{method}`), the protocol's header map in the headers, the
/// request id and protocol fields in extensions and the payload as the body.
pub trait Protocol: fmt::Debug + Send + Sync + 'static {
    /// A decoded frame.
    type Frame: fmt::Debug + Send + 'static;
    /// What the server side keeps of a request to answer it (id, version, codec...).
    type Meta: fmt::Debug + Clone + Send + Sync + 'static;

    /// The protocol's name (`bolt`, `dubbo`): metric labels, `RpcInfo::protocol`.
    fn name(&self) -> &'static str;

    /// Whether a connection starting with `prefix` speaks this protocol.
    fn sniff(&self, prefix: &[u8]) -> Sniff;

    /// The total length of the frame at the start of `buf`, read from its fixed
    /// header; `Ok(None)` while the fixed header is incomplete. The machinery refuses
    /// a frame longer than its configured maximum before buffering it.
    ///
    /// # Errors
    /// Bytes that cannot start a frame (a wrong magic, impossible lengths).
    fn frame_length(&self, buf: &[u8]) -> Result<Option<u64>, DecodeError>;

    /// Decodes one complete frame (exactly [`Protocol::frame_length`] bytes).
    ///
    /// # Errors
    /// A malformed frame.
    fn decode(&self, frame: Bytes) -> Result<Self::Frame, DecodeError>;

    /// Appends the encoding of `frame` to `dst`.
    ///
    /// # Errors
    /// A field too long for the wire format.
    fn encode(&self, frame: &Self::Frame, dst: &mut BytesMut) -> Result<(), EncodeError>;

    /// What kind of frame this is.
    fn kind(&self, frame: &Self::Frame) -> FrameKind;

    /// The frame's request id.
    fn request_id(&self, frame: &Self::Frame) -> u64;

    /// Replaces the frame's request id (upstream connections number their own requests).
    fn set_request_id(&self, frame: &mut Self::Frame, id: u64);

    /// The answer to a [`FrameKind::Heartbeat`].
    fn heartbeat_reply(&self, ping: &Self::Frame) -> Self::Frame;

    /// What the server side keeps of a request to answer it.
    fn request_meta(&self, request: &Self::Frame) -> Self::Meta;

    /// A request frame as an HTTP request.
    ///
    /// # Errors
    /// A payload whose routing fields cannot be read; the machinery answers it with
    /// [`Protocol::error_reply`] (reason `bad_request`).
    fn request_to_http(&self, request: Self::Frame) -> Result<HttpRequest, DecodeError>;

    /// An HTTP request (whose body has been read into `body`) as a request frame for an
    /// upstream. The request id is set afterwards by the machinery.
    ///
    /// # Errors
    /// A request the protocol cannot carry.
    fn request_from_http(
        &self,
        parts: http::request::Parts,
        body: Bytes,
    ) -> Result<Self::Frame, EncodeError>;

    /// A response frame from an upstream as an HTTP response.
    fn response_to_http(&self, response: Self::Frame) -> HttpResponse;

    /// An HTTP response (whose body has been read into `body`) as the response frame to
    /// the request described by `meta`.
    fn response_from_http(
        &self,
        meta: &Self::Meta,
        parts: http::response::Parts,
        body: Bytes,
    ) -> Self::Frame;

    /// The response frame for a proxy-side failure of the request described by `meta`.
    fn error_reply(&self, meta: &Self::Meta, failure: &Failure<'_>) -> Self::Frame;

    /// A keep-alive probe ([`FrameKind::Heartbeat`]) that upstream connections send
    /// when they have heard nothing for a while; `None` if the protocol has none. Its
    /// request id is set by the machinery.
    fn heartbeat(&self) -> Option<Self::Frame> {
        None
    }

    /// The frame a server sends on each connection when it starts to drain, telling
    /// the client to send no new requests there while those in flight finish (Dubbo's
    /// read-only event); `None` if the protocol has none. Calls that arrive anyway are
    /// answered with the protocol's "server closing" error. The frame is sent as
    /// built: a request id it carries is not rewritten.
    fn goaway(&self) -> Option<Self::Frame> {
        None
    }

    /// Whether a frame from an upstream says it takes no new requests on this
    /// connection (a [`Protocol::goaway`], such as Dubbo's read-only event during a
    /// graceful shutdown): new requests then go to a fresh connection while those in
    /// flight finish.
    fn is_goaway(&self, frame: &Self::Frame) -> bool {
        let _ = frame;
        false
    }

    /// The caller's own timeout carried by a request (in the extensions this
    /// protocol's [`Protocol::request_to_http`] set), if the protocol has one; the
    /// upstream client waits no longer than this (nor than its configured cap).
    fn timeout(&self, request: &http::request::Parts) -> Option<std::time::Duration> {
        let _ = request;
        None
    }

    /// The reply to send before closing a connection that sent a malformed frame,
    /// if the protocol can say which request it was; `head` holds the frame's first
    /// bytes (at least its fixed header when one was read).
    fn malformed_reply(&self, head: &[u8], err: &DecodeError) -> Option<Self::Frame> {
        let _ = (head, err);
        None
    }

    /// What the fixed header at the start of `head` says of its frame (kind, request
    /// id and, for a request, what answering it needs), read without the rest of the
    /// frame; `None` if the header is incomplete or the protocol cannot tell.
    ///
    /// With it, a frame longer than `max_frame_bytes` fails only its own call: the
    /// machinery skips its body without buffering it, answers an oversized request
    /// with [`Protocol::error_reply`] (reason `body_too_large`) and fails the caller
    /// of an oversized response, and the connection carries on. Without it (the
    /// default), an oversized frame closes the connection.
    fn frame_head(&self, head: &[u8]) -> Option<FrameHead<Self::Meta>> {
        let _ = head;
        None
    }
}

/// What a frame's fixed header says, from [`Protocol::frame_head`].
#[derive(Debug, Clone)]
pub struct FrameHead<M> {
    /// The kind of frame.
    pub kind: FrameKind,
    /// Its request id.
    pub request_id: u64,
    /// What the server side keeps of a request to answer it.
    pub meta: M,
}
