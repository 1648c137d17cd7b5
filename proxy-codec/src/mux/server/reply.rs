//! A call's way back: its future through the request stack, and the frame written to
//! the caller for its answer, a proxy-side failure or a frame that could not be read.

use std::{future::Future, pin::Pin};

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use proxy_core::{BoxHttp, HttpRequest};
use tower_service::Service;

use super::super::{collect, log, CollectError, OwnedFailure};
use crate::{
    metrics::{Counters, TooLarge},
    protocol::{DecodeError, Protocol},
};

/// The answer of one request, ready to encode.
pub(super) struct Done<M> {
    pub(super) meta: M,
    pub(super) one_way: bool,
    pub(super) result: Result<(http::response::Parts, Bytes), Failed>,
}

/// Why a call has no answer to send as it is.
pub(super) enum Failed {
    /// A proxy-side failure.
    Proxy(OwnedFailure),
    /// The answer is longer than the listener's `max_frame_bytes` (`len` as in
    /// [`CollectError::TooLarge`]).
    AnswerTooLarge { len: u64 },
}

/// Starts `req` through the service; the future yields the collected response.
pub(super) fn call(
    service: &mut BoxHttp,
    req: HttpRequest,
    max_frame: usize,
) -> impl Future<Output = Result<(http::response::Parts, Bytes), Failed>> + Send + 'static {
    let ready =
        futures_util::FutureExt::now_or_never(std::future::poll_fn(|cx| service.poll_ready(cx)));
    let fut = match ready {
        Some(Ok(())) => Ok(service.call(req)),
        Some(Err(e)) => Err(OwnedFailure::from_box(&e)),
        // A service that is not ready at once is cloned and awaited for this request.
        None => Ok({
            let mut svc = service.clone();
            let f: Pin<Box<dyn Future<Output = _> + Send>> = Box::pin(async move {
                std::future::poll_fn(|cx| svc.poll_ready(cx)).await?;
                svc.call(req).await
            });
            f
        }),
    };
    async move {
        let resp = fut
            .map_err(Failed::Proxy)?
            .await
            .map_err(|e| Failed::Proxy(OwnedFailure::from_box(&e)))?;
        let (parts, body) = resp.into_parts();
        match collect(body, max_frame).await {
            Ok(body) => Ok((parts, body)),
            Err(CollectError::TooLarge { len }) => Err(Failed::AnswerTooLarge { len }),
            Err(CollectError::Failed) => Err(Failed::Proxy(OwnedFailure::new(
                "upstream_reset",
                StatusCode::BAD_GATEWAY,
                "body failed",
            ))),
        }
    }
}

pub(super) fn answer<P: Protocol>(
    proto: &P,
    done: Done<P::Meta>,
    counters: &Counters,
    max_frame: usize,
    wbuf: &mut BytesMut,
) {
    let frame = match done.result {
        Ok((parts, body)) => match parts.headers.get(proxy_core::proxy::PROXY_ERROR_HEADER) {
            Some(reason) => {
                let reason = reason.to_str().unwrap_or("internal").to_owned();
                let message = String::from_utf8_lossy(&body).trim_end().to_owned();
                let f = OwnedFailure::new(reason, parts.status, message);
                Counters::inc(&counters.error_replies);
                proto.error_reply(&done.meta, &f.as_failure())
            }
            None => proto.response_from_http(&done.meta, parts, body),
        },
        Err(Failed::Proxy(f)) => {
            Counters::inc(&counters.error_replies);
            proto.error_reply(&done.meta, &f.as_failure())
        }
        Err(Failed::AnswerTooLarge { len }) => {
            counters.count_too_large(TooLarge::Answer);
            log::too_large(proto.name(), TooLarge::Answer, len, max_frame);
            let f = OwnedFailure::new(
                TooLarge::Answer.reason(),
                StatusCode::BAD_GATEWAY,
                format!("answer of {len} bytes exceeds max_frame_bytes ({max_frame})"),
            );
            Counters::inc(&counters.error_replies);
            proto.error_reply(&done.meta, &f.as_failure())
        }
    };
    if !encode(proto, &frame, wbuf) {
        // An answer the wire format cannot carry (a field too long): the caller still
        // gets an answer.
        let f = OwnedFailure::new(
            "internal",
            StatusCode::INTERNAL_SERVER_ERROR,
            "response cannot be encoded",
        );
        Counters::inc(&counters.error_replies);
        let _ = encode(proto, &proto.error_reply(&done.meta, &f.as_failure()), wbuf);
    }
}

/// Appends `frame`; `false` (and nothing appended) if it cannot be encoded.
pub(super) fn encode<P: Protocol>(proto: &P, frame: &P::Frame, wbuf: &mut BytesMut) -> bool {
    let start = wbuf.len();
    match proto.encode(frame, wbuf) {
        Ok(()) => true,
        Err(e) => {
            wbuf.truncate(start);
            tracing::debug!(protocol = proto.name(), error = %e, "frame could not be encoded");
            false
        }
    }
}

pub(super) fn malformed<P: Protocol>(
    proto: &P,
    head: &[u8],
    err: &DecodeError,
    counters: &Counters,
    wbuf: &mut BytesMut,
) {
    if matches!(err, DecodeError::TooLarge { .. }) {
        Counters::inc(&counters.oversized_frames);
    } else {
        Counters::inc(&counters.malformed_frames);
    }
    tracing::debug!(protocol = proto.name(), error = %err, "malformed frame; closing the connection");
    if let Some(reply) = proto.malformed_reply(&head[..head.len().min(64)], err) {
        let _ = encode(proto, &reply, wbuf);
    }
}
