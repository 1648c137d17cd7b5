//! An HTTP/2 body read straight off its `h2` stream: a downstream request's, an
//! upstream answer's.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::{
    http1::decode::DecodeError,
    stall::{BodyStalled, Stall},
    BoxError,
};

/// The DATA frames of a stream, then its trailers. Every chunk handed on gives its
/// flow-control window back at once, as hyper's body does: the proxy's own buffering
/// (the write to the other side) is what paces the peer.
#[derive(Debug)]
pub(crate) struct RecvBody {
    recv: h2::RecvStream,
    data_done: bool,
    /// The bytes `content-length` still announces, when the request had one.
    remaining: Option<u64>,
    /// How long the peer may leave the next frame waited for.
    stall: Stall,
}

impl RecvBody {
    pub(crate) fn new(recv: h2::RecvStream, content_length: Option<u64>, stall: Duration) -> Self {
        Self {
            recv,
            data_done: false,
            remaining: content_length,
            stall: Stall::new(stall),
        }
    }

    /// Waiting for the peer: an error once this wait has lasted the stall limit.
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
                // Even a reset with NO_ERROR: a body is whole only with END_STREAM
                // (RFC 9113, 8.1), and the other side must not take a cut one for
                // whole.
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => this.data_done = true,
                Poll::Pending => return this.stalled(cx),
            }
        }
        match this.recv.poll_trailers(cx) {
            // Malformed trailers (RFC 9113 8.2.1) fail the body: the other side never
            // takes the message for whole.
            Poll::Ready(Ok(Some(t))) if t.values().any(super::padded) => {
                Poll::Ready(Some(Err(DecodeError::BadTrailers.into())))
            }
            Poll::Ready(Ok(trailers)) => Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t)))),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            Poll::Pending => this.stalled(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
