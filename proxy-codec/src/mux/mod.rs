//! The generic machinery over a [`crate::Protocol`]: the downstream connection loop
//! behind [`crate::RpcServer`], serving many concurrent requests on one connection,
//! and the pooled, multiplexed upstream client behind [`crate::RpcUpstream`]
//! ([`MuxClient`]).

pub(crate) mod client;
mod connection;
mod frames;
mod log;
pub(crate) mod server;

use std::{borrow::Cow, future::Future};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use proxy_core::{Body, BoxError, ProxyError};

pub use self::client::{Connect, MuxClient, DEFAULT_REQUEST_TIMEOUT};
pub(crate) use self::frames::{next_frame, skip};

use crate::protocol::Failure;

/// Encoded bytes waiting to be written past which a connection stops taking more
/// work (reading requests downstream, taking requests upstream) until the peer reads.
pub(crate) const WRITE_HIGH_WATER: usize = 1 << 20;

/// A failure owned by the machinery until it is turned into a reply.
#[derive(Debug, Clone)]
pub(crate) struct OwnedFailure {
    pub(crate) reason: Cow<'static, str>,
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl OwnedFailure {
    pub(crate) fn new(
        reason: impl Into<Cow<'static, str>>,
        status: StatusCode,
        message: impl Into<String>,
    ) -> Self {
        Self {
            reason: reason.into(),
            status,
            message: message.into(),
        }
    }

    pub(crate) fn from_proxy(e: &ProxyError) -> Self {
        Self::new(e.reason(), e.status(), e.to_string())
    }

    /// From an error of the request stack: a `ProxyError` in its chain, else internal.
    pub(crate) fn from_box(e: &BoxError) -> Self {
        match ProxyError::find(&**e) {
            Some(p) => Self::from_proxy(p),
            None => Self::new(
                "internal",
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
            ),
        }
    }

    pub(crate) fn as_failure(&self) -> Failure<'_> {
        Failure {
            reason: &self.reason,
            status: self.status,
            message: &self.message,
        }
    }
}

/// Why a body could not be read whole.
#[derive(Debug)]
pub(crate) enum CollectError {
    /// It is longer than the limit: `len` is its size when known, else at least the
    /// limit plus one.
    TooLarge { len: u64 },
    /// The body failed.
    Failed,
}

/// Reads a whole body, refusing more than `max` bytes. A body already in memory (an
/// RPC frame's, mapped to HTTP) is taken at once; only a streaming one is read, in a
/// box of its own, so that the future a call carries stays small.
pub(crate) fn collect(
    mut body: Body,
    max: usize,
) -> impl Future<Output = Result<Bytes, CollectError>> + Send + 'static {
    let buffered = take_whole(&mut body, max);
    async move {
        match buffered {
            Some(done) => done,
            None => Box::pin(collect_streaming(body, max)).await,
        }
    }
}

/// A body already in memory, whole (refused past `max` bytes); `None` for a body
/// still streaming, which is left as it was.
pub(crate) fn take_whole(body: &mut Body, max: usize) -> Option<Result<Bytes, CollectError>> {
    body.take_buffered().map(|b| {
        if b.len() > max {
            Err(CollectError::TooLarge {
                len: b.len() as u64,
            })
        } else {
            Ok(b)
        }
    })
}

/// Reads a streaming body whole, refusing more than `max` bytes ([`collect`] for a
/// body that [`take_whole`] left).
pub(crate) async fn collect_streaming(body: Body, max: usize) -> Result<Bytes, CollectError> {
    let hint = http_body::Body::size_hint(&body);
    let limited = http_body_util::Limited::new(body, max);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(CollectError::TooLarge {
            len: hint.exact().unwrap_or(hint.lower().max(max as u64 + 1)),
        }),
        Err(_) => Err(CollectError::Failed),
    }
}
