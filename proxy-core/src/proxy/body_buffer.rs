//! Request bodies still arriving when their request is to go upstream (slow-body
//! defence). A small one is read whole first: a client that trickles it ties up its
//! own connection only, never an upstream connection, a pool slot or a
//! circuit-breaker permit. A longer one of announced length streams, and must keep
//! arriving at a minimum rate ([`super::body_rate`]).

use std::time::Duration;

use http_body::Body as _;
use http_body_util::BodyExt;

use super::body_rate::{quiet_by_design, BodyTooSlow, MinRateBody};
use crate::{Body, BoxError, HttpRequest, ProxyError};

/// What happens to a request body still arriving when its request is to go upstream.
/// One whose announced length (`content-length`) is at most `limit` bytes is read
/// whole first, and must arrive within `within` (else 408); a `limit` of 0 streams
/// every body. With a minimum rate, a longer body of announced length streams but
/// may keep the proxy waiting on the client at most `within` plus one second per
/// `min_rate` bytes it sent (else 408), and so must a body of unknown length (a chunked
/// upload, an HTTP/2 body without `content-length`). Streams that may be quiet by
/// design (gRPC, whose `content-type` is `application/grpc...`, and `CONNECT`
/// tunnels) are never held to the rate; they are bounded by the stream idle timeout.
///
/// # Example
/// ```
/// use proxy_core::proxy::BodyBuffer;
/// use std::time::Duration;
///
/// let b = BodyBuffer::new(16 * 1024, Duration::from_secs(10)).with_min_rate(240);
/// assert_eq!(b.limit(), 16 * 1024);
/// assert_eq!(b.min_rate(), 240);
/// assert!(BodyBuffer::default().is_off());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodyBuffer {
    limit: u64,
    within: Duration,
    min_rate: u64,
}

impl BodyBuffer {
    /// Bodies announced at most `limit` bytes long are read whole, within `within`;
    /// longer ones stream with no minimum rate.
    pub fn new(limit: u64, within: Duration) -> Self {
        Self {
            limit,
            within,
            min_rate: 0,
        }
    }

    /// Longer bodies of announced length must arrive at `bytes_per_second` on
    /// average, after a grace of `within`; 0 sets no minimum.
    pub fn with_min_rate(self, bytes_per_second: u64) -> Self {
        Self {
            min_rate: bytes_per_second,
            ..self
        }
    }

    /// A listener's default: `request_body_buffer` within `header_read_timeout`, and
    /// `request_body_min_rate`.
    pub(crate) fn listener_default() -> Self {
        let limits = crate::config::ConnectionLimits::default();
        Self::new(limits.request_body_buffer.get(), limits.header_read_timeout)
            .with_min_rate(limits.request_body_min_rate.get())
    }

    /// The largest body read whole.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The minimum rate of a longer body, in bytes per second (0: none).
    pub fn min_rate(&self) -> u64 {
        self.min_rate
    }

    /// Whether every body streams, with no minimum rate.
    pub fn is_off(&self) -> bool {
        self.limit == 0 && self.min_rate == 0
    }

    /// Whether `body` is one to read whole first: still arriving, of a known length
    /// within the limit. A body in memory already (or empty) costs one match.
    pub(crate) fn wants(&self, body: &Body) -> bool {
        self.limit != 0
            && !body.in_memory()
            && !body.is_end_stream()
            && body.size_hint().exact().is_some_and(|n| n <= self.limit)
    }

    /// Makes `req`'s body ready to go upstream: read whole when [`Self::wants`] it,
    /// else held to the minimum rate while it arrives ([`Self::pace`]).
    pub(crate) async fn prepare(&self, req: &mut HttpRequest) -> Result<(), ProxyError> {
        if self.wants(req.body()) {
            return self.read_whole(req.body_mut()).await;
        }
        self.pace(req);
        Ok(())
    }

    /// Holds `req`'s body, still arriving, to the minimum rate, unless the request is
    /// a stream that may be quiet by design ([`quiet_by_design`]).
    pub(crate) fn pace(&self, req: &mut HttpRequest) {
        let body = req.body();
        if self.min_rate != 0
            && !body.in_memory()
            && !body.is_end_stream()
            && (body.size_hint().exact().is_some() || !quiet_by_design(req))
        {
            let inner = std::mem::take(req.body_mut());
            *req.body_mut() = Body::new(MinRateBody::new(inner, self.min_rate, self.within));
        }
    }

    /// Reads `body` whole into memory, in place: 408 when it takes longer than
    /// `within`, the client's error (400) when it fails.
    pub(crate) async fn read_whole(&self, body: &mut Body) -> Result<(), ProxyError> {
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        match tokio::time::timeout(self.within, collect(std::mem::take(body), limit)).await {
            Ok(Ok(whole)) => {
                *body = whole;
                Ok(())
            }
            Ok(Err(e)) => Err(client_body_error(&*e)),
            Err(_) => Err(ProxyError::RequestTimeout),
        }
    }
}

/// A client's request body failed (cut short, too slow, malformed): the client's
/// fault, not the upstream's, and the answer says which.
pub(crate) fn client_body_error(cause: &(dyn std::error::Error + 'static)) -> ProxyError {
    use crate::http1::decode::DecodeError;
    if crate::error::find_cause::<crate::stall::BodyStalled>(cause).is_some()
        || crate::error::find_cause::<BodyTooSlow>(cause).is_some()
    {
        return ProxyError::RequestTimeout;
    }
    ProxyError::BadRequest(match crate::error::find_cause::<DecodeError>(cause) {
        Some(DecodeError::BadTrailers) => "invalid request trailers",
        Some(DecodeError::BadChunkSize | DecodeError::BadChunkEnd) => {
            "invalid chunked request body"
        }
        Some(DecodeError::UnexpectedEof) | None => "request body incomplete",
    })
}

/// All of `body` (at most `limit` bytes: a longer one fails), in one buffer, with its
/// trailers if any. A body that came in one frame keeps that frame's bytes, uncopied.
async fn collect(body: Body, limit: usize) -> Result<Body, BoxError> {
    let whole = http_body_util::Limited::new(body, limit).collect().await?;
    Ok(match whole.trailers() {
        None => Body::from(whole.to_bytes()),
        // Rare: its data, then its trailers.
        Some(_) => Body::new(whole),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use futures_util::StreamExt;
    use http::HeaderMap;
    use http_body::Frame;

    fn streaming(chunks: &[&'static str], trailers: bool) -> Body {
        let mut frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
            .collect();
        if trailers {
            let mut t = HeaderMap::new();
            t.insert("x-sum", http::HeaderValue::from_static("1"));
            frames.push(Ok(Frame::trailers(t)));
        }
        let len: usize = chunks.iter().map(|c| c.len()).sum();
        Body::new(Exact(
            http_body_util::StreamBody::new(futures_util::stream::iter(frames)),
            len as u64,
        ))
    }

    /// A stream of frames that announces its length.
    struct Exact<B>(B, u64);

    impl<B: http_body::Body + Unpin> http_body::Body for Exact<B> {
        type Data = B::Data;
        type Error = B::Error;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<Frame<B::Data>, B::Error>>> {
            std::pin::Pin::new(&mut self.0).poll_frame(cx)
        }
        fn size_hint(&self) -> http_body::SizeHint {
            http_body::SizeHint::with_exact(self.1)
        }
    }

    #[tokio::test]
    async fn a_small_body_in_pieces_becomes_one_buffer() {
        let buffer = BodyBuffer::new(16, Duration::from_secs(1));
        let mut body = streaming(&["12345", "678", "90"], false);
        assert!(buffer.wants(&body));
        buffer.read_whole(&mut body).await.unwrap();
        assert!(!buffer.wants(&body));
        assert_eq!(body.take_buffered().unwrap(), "1234567890");
    }

    #[tokio::test]
    async fn trailers_go_on_after_the_data() {
        let buffer = BodyBuffer::new(16, Duration::from_secs(1));
        let mut body = streaming(&["ab", "cd"], true);
        buffer.read_whole(&mut body).await.unwrap();
        let whole = body.collect().await.unwrap();
        assert_eq!(whole.trailers().unwrap()["x-sum"], "1");
        assert_eq!(whole.to_bytes(), "abcd");
    }

    #[tokio::test]
    async fn bodies_over_the_limit_or_of_unknown_length_stream() {
        let buffer = BodyBuffer::new(4, Duration::from_secs(1));
        assert!(!buffer.wants(&streaming(&["12345"], false)));
        let unknown = Body::new(http_body_util::StreamBody::new(futures_util::stream::iter(
            [Ok::<_, std::convert::Infallible>(Frame::data(
                Bytes::from_static(b"1"),
            ))],
        )));
        assert!(!buffer.wants(&unknown));
        assert!(!buffer.wants(&Body::from("123")));
        assert!(!BodyBuffer::new(0, Duration::from_secs(1)).wants(&streaming(&["1"], false)));
    }

    #[tokio::test]
    async fn a_body_longer_than_announced_is_a_400() {
        let buffer = BodyBuffer::new(16, Duration::from_secs(1));
        let mut body = Body::new(Exact(
            http_body_util::StreamBody::new(futures_util::stream::iter([Ok::<
                _,
                std::convert::Infallible,
            >(
                Frame::data(Bytes::from_static(&[b'a'; 20])),
            )])),
            3,
        ));
        let err = buffer.read_whole(&mut body).await.unwrap_err();
        assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_arriving_is_a_408() {
        let buffer = BodyBuffer::new(16, Duration::from_secs(1));
        // Two bytes of ten, then nothing more.
        let frames = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(Frame::data(
            Bytes::from_static(b"12"),
        ))])
        .chain(futures_util::stream::pending());
        let mut body = Body::new(Exact(http_body_util::StreamBody::new(frames), 10));
        let err = buffer.read_whole(&mut body).await.unwrap_err();
        assert!(matches!(err, ProxyError::RequestTimeout), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_layer_answers_a_slow_body_408_without_calling_its_service() {
        use tower::{ServiceBuilder, ServiceExt};
        let called = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = called.clone();
        let stack = ServiceBuilder::new()
            .layer(crate::proxy::LocalReplyLayer)
            .layer(crate::proxy::BodyBufferLayer::new(BodyBuffer::new(
                16,
                Duration::from_secs(1),
            )))
            .service(tower::service_fn(move |req: crate::HttpRequest| {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move { Ok::<_, BoxError>(crate::HttpResponse::new(req.into_body())) }
            }));
        let frames = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(Frame::data(
            Bytes::from_static(b"12"),
        ))])
        .chain(futures_util::stream::pending());
        let slow = Body::new(Exact(http_body_util::StreamBody::new(frames), 10));
        let resp = stack
            .clone()
            .oneshot(crate::HttpRequest::new(slow))
            .await
            .unwrap();
        assert_eq!(resp.status(), http::StatusCode::REQUEST_TIMEOUT);
        assert_eq!(called.load(std::sync::atomic::Ordering::SeqCst), 0);
        let whole = stack
            .oneshot(crate::HttpRequest::new(streaming(&["ab", "cd"], false)))
            .await
            .unwrap();
        let mut body = whole.into_body();
        assert_eq!(body.take_buffered().unwrap(), "abcd");
        assert_eq!(called.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
