//! A downstream HTTP/2 request body read straight off its `h2` stream.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use h2::Reason;
use http::HeaderMap;
use http_body::{Frame, SizeHint};

use crate::{
    http1::decode::DecodeError,
    stall::{BodyStalled, Stall},
    BoxError,
};

/// The DATA frames of a request stream, then its trailers. Every chunk handed on gives
/// its flow-control window back at once, as hyper's body does: the proxy's own
/// buffering (the upstream write) is what paces the client.
#[derive(Debug)]
pub(crate) struct RecvBody {
    recv: h2::RecvStream,
    data_done: bool,
    /// The bytes `content-length` still announces, when the request had one.
    remaining: Option<u64>,
    /// How long the client may leave the next frame waited for.
    stall: Stall,
    /// What was read ahead of a small body with trailers (boxed: rare, and the body
    /// is part of every request's future).
    held: Option<Box<Held>>,
}

/// A small body read whole, with its trailers, before its request was forwarded.
#[derive(Debug)]
struct Held {
    /// The body's DATA, until handed on.
    data: Option<Bytes>,
    /// The trailers, until handed on.
    trailers: Option<HeaderMap>,
}

impl RecvBody {
    pub(super) fn new(recv: h2::RecvStream, content_length: Option<u64>, stall: Duration) -> Self {
        Self {
            recv,
            data_done: false,
            remaining: content_length,
            stall: Stall::new(stall),
            held: None,
        }
    }

    /// Reads a small body whole, before its request goes anywhere (see
    /// `request_body_buffer`): the request's body then, or `Err` when the stream
    /// failed first (a reset, more DATA than `content-length`, which `h2` refuses).
    /// Bounded by `limit` bytes whatever the client announced; the caller bounds the
    /// time it takes.
    pub(super) async fn read_ahead(mut self, limit: usize) -> Result<crate::Body, h2::Error> {
        let mut data = bytes::BytesMut::new();
        let mut first: Option<Bytes> = None;
        while let Some(chunk) = self.recv.data().await {
            let chunk = chunk?;
            let _ = self.recv.flow_control().release_capacity(chunk.len());
            if data.len() + first.as_ref().map_or(0, Bytes::len) + chunk.len() > limit {
                return Err(h2::Error::from(Reason::PROTOCOL_ERROR));
            }
            // A body in one frame (the usual case) is kept as it came, without a copy.
            match first.take() {
                None if data.is_empty() => first = Some(chunk),
                Some(f) => {
                    data.extend_from_slice(&f);
                    data.extend_from_slice(&chunk);
                }
                None => data.extend_from_slice(&chunk),
            }
        }
        self.data_done = true;
        self.remaining = Some(0);
        let body = first.unwrap_or_else(|| data.freeze());
        match self.recv.trailers().await? {
            None => Ok(crate::Body::from(body)),
            Some(trailers) => {
                self.held = Some(Box::new(Held {
                    data: Some(body).filter(|b| !b.is_empty()),
                    trailers: Some(trailers),
                }));
                Ok(crate::Body::from_h2(self))
            }
        }
    }

    /// Waiting for the client: an error once this wait has lasted the stall limit.
    fn stalled(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.stall.poll_expired(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyStalled.into()))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl http_body::Body for RecvBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(held) = &mut this.held {
            if let Some(data) = held.data.take() {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            return Poll::Ready(held.trailers.take().map(trailers_frame));
        }
        if !this.data_done {
            match this.recv.poll_data(cx) {
                Poll::Ready(Some(Ok(data))) => {
                    this.stall.progress();
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    if let Some(left) = &mut this.remaining {
                        *left = left.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                // Even a reset with NO_ERROR: a request body is whole only with
                // END_STREAM (RFC 9113, 8.1), and the upstream must not take a cut
                // one for whole.
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => this.data_done = true,
                Poll::Pending => return this.stalled(cx),
            }
        }
        match this.recv.poll_trailers(cx) {
            Poll::Ready(Ok(trailers)) => Poll::Ready(trailers.map(trailers_frame)),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            Poll::Pending => this.stalled(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.held {
            Some(held) => held.data.is_none() && held.trailers.is_none(),
            None => self.recv.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        if let Some(held) = &self.held {
            return SizeHint::with_exact(held.data.as_ref().map_or(0, |d| d.len() as u64));
        }
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// The body's trailers. Malformed ones (RFC 9113 8.2.1) fail the body: the upstream
/// never takes the request for whole.
fn trailers_frame(t: HeaderMap) -> Result<Frame<Bytes>, BoxError> {
    if t.values().any(super::stream::padded) {
        return Err(DecodeError::BadTrailers.into());
    }
    Ok(Frame::trailers(t))
}
