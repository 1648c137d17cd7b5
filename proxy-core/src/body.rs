//! The one body type of the proxy: every request and response body, whatever the
//! protocol it came from, is a [`Body`].

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::{combinators::BoxBody, BodyExt};

use crate::{h2_body::RecvBody as H2RecvBody, http1::RecvBody, BoxError};

/// A streaming HTTP body.
///
/// The common shapes (empty, one buffer, a hyper body, a body read straight off an
/// HTTP/1.1 connection) are enum variants so that the request path does not allocate
/// for them; anything else is boxed.
///
/// # Example
/// ```
/// use http_body_util::BodyExt;
/// # tokio_test_block_on(async {
/// let body = proxy_core::Body::from("hello");
/// let bytes = body.collect().await.unwrap().to_bytes();
/// assert_eq!(bytes, "hello");
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug, Default)]
pub struct Body {
    kind: Kind,
}

#[derive(Default)]
enum Kind {
    #[default]
    Empty,
    Full(Option<Bytes>),
    Hyper(hyper::body::Incoming),
    /// An HTTP/2 upstream's answer, whose next frame is waited for at most the
    /// cluster's stream idle timeout, holding its stream on the connection until it
    /// ends.
    UpstreamH2(Box<UpstreamAnswer>),
    H1(RecvBody),
    H2(H2RecvBody),
    Boxed(BoxBody<Bytes, BoxError>),
}

/// An HTTP/2 upstream's answer body (boxed: the variant would make every body
/// larger), holding its stream on the connection until it ends.
struct UpstreamAnswer {
    body: H2RecvBody,
    stream: Option<crate::upstream::H2Stream>,
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Empty => "Empty",
            Kind::Full(_) => "Full",
            Kind::Hyper(_) => "Hyper",
            Kind::UpstreamH2(..) => "UpstreamH2",
            Kind::H1(_) => "H1",
            Kind::H2(_) => "H2",
            Kind::Boxed(_) => "Boxed",
        })
    }
}

impl Body {
    /// An empty body.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Wraps any body whose errors convert into [`BoxError`].
    pub fn new<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        Self {
            kind: Kind::Boxed(body.map_err(Into::into).boxed()),
        }
    }

    pub(crate) fn from_h1(body: RecvBody) -> Self {
        Self {
            kind: Kind::H1(body),
        }
    }

    /// An HTTP/2 upstream's answer body, of `content_length` bytes when the answer
    /// says: a wait of `stall` for its next frame fails it (and drops the stream,
    /// which resets it).
    pub(crate) fn from_upstream_h2(
        recv: h2::RecvStream,
        content_length: Option<u64>,
        stall: Duration,
        stream: crate::upstream::H2Stream,
    ) -> Self {
        if recv.is_end_stream() {
            return Self::empty();
        }
        Self {
            kind: Kind::UpstreamH2(Box::new(UpstreamAnswer {
                body: H2RecvBody::new(recv, content_length, stall),
                stream: Some(stream),
            })),
        }
    }

    pub(crate) fn from_h2(body: H2RecvBody) -> Self {
        Self {
            kind: Kind::H2(body),
        }
    }

    /// Whether the whole body is in memory (empty or one buffer).
    pub(crate) fn in_memory(&self) -> bool {
        matches!(self.kind, Kind::Empty | Kind::Full(_))
    }

    /// Takes the whole body if it is already in memory (empty, made from bytes, or
    /// read whole by the proxy), leaving it empty; `None` (the body untouched) for a
    /// body still streaming. A layer that needs the bytes of a small body can take
    /// them without a future and a poll.
    ///
    /// # Example
    /// ```
    /// let mut body = proxy_core::Body::from("hello");
    /// assert_eq!(body.take_buffered().as_deref(), Some(&b"hello"[..]));
    /// assert_eq!(body.take_buffered().as_deref(), Some(&b""[..]));
    /// ```
    pub fn take_buffered(&mut self) -> Option<Bytes> {
        match &mut self.kind {
            Kind::Empty => Some(Bytes::new()),
            Kind::Full(b) => Some(b.take().unwrap_or_default()),
            _ => None,
        }
    }

    /// A copy of this body if it can be replayed (empty or fully buffered), for retries
    /// and mirroring. Streaming bodies return `None`.
    pub fn try_clone(&self) -> Option<Self> {
        match &self.kind {
            Kind::Empty => Some(Self::empty()),
            Kind::Full(b) => Some(Self {
                kind: Kind::Full(b.clone()),
            }),
            _ => None,
        }
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        if b.is_empty() {
            Self::empty()
        } else {
            Self {
                kind: Kind::Full(Some(b)),
            }
        }
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Bytes::from_static(s.as_bytes()).into()
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Bytes::from(s).into()
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Bytes::from(v).into()
    }
}

impl From<hyper::body::Incoming> for Body {
    /// A body that has already ended (an HTTP/2 HEADERS frame with END_STREAM, or a
    /// `content-length: 0`) becomes [`Body::empty`], so it can be cloned for a retry or
    /// a failover like any other empty body.
    fn from(b: hyper::body::Incoming) -> Self {
        if http_body::Body::is_end_stream(&b) {
            return Self::empty();
        }
        Self {
            kind: Kind::Hyper(b),
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Kind::UpstreamH2(answer) => {
                let frame = Pin::new(&mut answer.body).poll_frame(cx);
                if let Poll::Ready(None | Some(Err(_))) = frame {
                    // The stream ended: the connection may take another.
                    answer.stream.take();
                }
                frame
            }
            Kind::H1(b) => Pin::new(b).poll_frame(cx),
            Kind::H2(b) => Pin::new(b).poll_frame(cx),
            Kind::Boxed(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(b) => b.is_none(),
            Kind::Hyper(b) => b.is_end_stream(),
            Kind::UpstreamH2(answer) => answer.body.is_end_stream(),
            Kind::H1(b) => b.is_end_stream(),
            Kind::H2(b) => b.is_end_stream(),
            Kind::Boxed(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Hyper(b) => b.size_hint(),
            Kind::UpstreamH2(answer) => answer.body.size_hint(),
            Kind::H1(b) => b.size_hint(),
            Kind::H2(b) => b.size_hint(),
            Kind::Boxed(b) => b.size_hint(),
        }
    }
}
