//! A downstream HTTP/2 request body read straight off its `h2` stream.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::BoxError;

/// The DATA frames of a request stream, then its trailers. Every chunk handed on gives
/// its flow-control window back at once, as hyper's body does: the proxy's own
/// buffering (the upstream write) is what paces the client.
#[derive(Debug)]
pub(crate) struct RecvBody {
    recv: h2::RecvStream,
    data_done: bool,
    /// The bytes `content-length` still announces, when the request had one.
    remaining: Option<u64>,
}

impl RecvBody {
    pub(super) fn new(recv: h2::RecvStream, content_length: Option<u64>) -> Self {
        Self {
            recv,
            data_done: false,
            remaining: content_length,
        }
    }
}

/// A RST_STREAM with NO_ERROR asks the sender to stop early (RFC 9113, 8.1): the body
/// ends there without an error.
fn end_or_error<T>(e: h2::Error) -> Option<Result<T, BoxError>> {
    if e.reason() == Some(h2::Reason::NO_ERROR) {
        None
    } else {
        Some(Err(e.into()))
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
            match std::task::ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    if let Some(left) = &mut this.remaining {
                        *left = left.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => return Poll::Ready(end_or_error(e)),
                None => this.data_done = true,
            }
        }
        match std::task::ready!(this.recv.poll_trailers(cx)) {
            Ok(trailers) => Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t)))),
            Err(e) => Poll::Ready(end_or_error(e)),
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
