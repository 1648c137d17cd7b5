//! The body of a request received over HTTP/3: its DATA frames, read as the stack
//! reads the body (nothing is buffered beyond what QUIC flow control allows), then
//! its trailers.

use std::{
    pin::Pin,
    task::{ready, Context, Poll},
};

use ::h3::error::Code;
use bytes::{Buf, Bytes};
use http_body::{Frame, SizeHint};
use proxy_core::{Body, BoxError};
use sync_wrapper::SyncWrapper;

/// The receiving half of a request stream.
pub(super) type RecvHalf = ::h3::server::RequestStream<h3_quinn::RecvStream, Bytes>;

/// Why a request body received over HTTP/3 ended in an error; found in the source
/// chain of the body's [`BoxError`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestBodyError {
    /// The body went past its `content-length` (a malformed request, RFC 9114
    /// section 4.1.2).
    #[error("request body longer than its content-length of {declared} bytes")]
    TooLong {
        /// The declared length.
        declared: u64,
    },
    /// The stream ended before `content-length` bytes arrived.
    #[error("request body of {received} bytes shorter than its content-length of {declared}")]
    TooShort {
        /// The declared length.
        declared: u64,
        /// The bytes that arrived.
        received: u64,
    },
    /// The client reset the stream, or the connection failed.
    #[error("reading the request body")]
    Stream(#[source] ::h3::error::StreamError),
}

enum State {
    Data,
    Trailers,
    Done,
}

/// A [`http_body::Body`] over the receiving half of a request stream.
pub(super) struct RequestBody {
    // `RecvHalf` is `Send` but not `Sync`; the body is only used through `&mut`.
    stream: SyncWrapper<RecvHalf>,
    /// A frame read ahead by [`RequestBody::into_body`].
    first: Option<Result<Frame<Bytes>, BoxError>>,
    declared: Option<u64>,
    received: u64,
    state: State,
}

impl RequestBody {
    /// The request's [`Body`]: empty when the stream has already ended without data
    /// (a GET whose FIN came with its HEADERS frame), so that upstreams see a request
    /// without a body rather than a chunked one.
    pub(super) fn into_body(stream: RecvHalf, declared: Option<u64>) -> Body {
        let mut body = Self {
            stream: SyncWrapper::new(stream),
            first: None,
            declared,
            received: 0,
            state: State::Data,
        };
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        match body.poll_frame_inner(&mut cx) {
            Poll::Ready(None) => Body::empty(),
            Poll::Ready(Some(frame)) => {
                body.first = Some(frame);
                Body::new(body)
            }
            Poll::Pending => Body::new(body),
        }
    }

    fn fail(&mut self, err: RequestBodyError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.state = State::Done;
        if !matches!(err, RequestBodyError::Stream(_)) {
            self.stream.get_mut().stop_sending(Code::H3_MESSAGE_ERROR);
        }
        Poll::Ready(Some(Err(Box::new(err))))
    }

    fn poll_frame_inner(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            match self.state {
                State::Data => match ready!(self.stream.get_mut().poll_recv_data(cx)) {
                    Ok(Some(mut buf)) => {
                        let data = buf.copy_to_bytes(buf.remaining());
                        self.received = self.received.saturating_add(data.len() as u64);
                        if let Some(declared) = self.declared.filter(|d| self.received > *d) {
                            return self.fail(RequestBodyError::TooLong { declared });
                        }
                        if !data.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                    }
                    Ok(None) => {
                        if let Some(declared) = self.declared.filter(|d| self.received != *d) {
                            let received = self.received;
                            return self.fail(RequestBodyError::TooShort { declared, received });
                        }
                        self.state = State::Trailers;
                    }
                    Err(e) => return self.fail(RequestBodyError::Stream(e)),
                },
                State::Trailers => {
                    let trailers = ready!(self.stream.get_mut().poll_recv_trailers(cx));
                    self.state = State::Done;
                    return match trailers {
                        Ok(Some(t)) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
                        Ok(None) => Poll::Ready(None),
                        Err(e) => self.fail(RequestBodyError::Stream(e)),
                    };
                }
                State::Done => return Poll::Ready(None),
            }
        }
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(first));
        }
        this.poll_frame_inner(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.declared {
            Some(d) => SizeHint::with_exact(
                d.saturating_sub(self.received)
                    + self.first.as_ref().map_or(0, |f| match f {
                        Ok(f) => f.data_ref().map_or(0, |d| d.len() as u64),
                        Err(_) => 0,
                    }),
            ),
            None => SizeHint::default(),
        }
    }
}
