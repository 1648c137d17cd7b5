//! `request_size_limit`: a largest request body, for HTTP/1.1 and HTTP/2.
//!
//! - A request whose `content-length` is over `max_bytes` is answered `413 Payload
//!   Too Large` (`x-proxy-error: request_too_large`) at once: no byte of its body is
//!   read and nothing goes upstream. (proxy-core's HTTP/1.1 server answers `expect:
//!   100-continue` with `100 Continue` as it reads the head, before the filters run,
//!   so such a client may start sending; it gets the 413 all the same.) A `content-length` within the limit is
//!   enforced by the codecs (a body cannot outgrow it), so it costs nothing more.
//! - A body without a length (HTTP/1.1 chunked, HTTP/2 DATA frames without
//!   `content-length`) is counted as it streams. The frame that takes it past
//!   `max_bytes` is not forwarded: the body fails with [`BodyTooLarge`], which aborts
//!   the upstream request (an HTTP/1.1 upstream connection is closed mid-body and not
//!   reused; an HTTP/2 upstream stream is reset), so the upstream never sees a
//!   complete request. Whether or not headers and the first bytes went upstream, the
//!   downstream gets `413` as long as no response has started; the rest of its body
//!   is not read (HTTP/1.1: the connection closes after the 413; HTTP/2: the stream
//!   is reset after it). An upstream that answered before the body ran over has its
//!   answer replaced by the 413 too: its request was incomplete.
//!
//! Counters: `proxy_filters_request_size_limit_rejected_total{reason="content_length"
//! |"streamed"}`.
//!
//! ```yaml
//! http_filters:
//!   - typed: request_size_limit
//!     config: { max_bytes: 8MiB }
//! ```

mod body;

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use http::StatusCode;
use proxy_core::{config::ByteSize, Body, BoxError, HttpRequest, HttpResponse, Registry};
use serde::{Deserialize, Serialize};
use tower_service::Service;

pub use body::BodyTooLarge;
use body::LimitedBody;

use crate::{
    metrics::{sample, Counter, CounterSet, FilterMetrics, Sample},
    ConfigError,
};

/// The registered name.
pub const NAME: &str = "request_size_limit";

/// The `request_size_limit` filter's section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSizeLimitConfig {
    /// Names this filter in metrics (default: the route's name for a route's own
    /// filter, else the listener's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The largest request body admitted: bytes, or a size such as `8MiB`.
    pub max_bytes: ByteSize,
}

/// The counters of one `request_size_limit` filter.
#[derive(Debug, Default)]
pub struct RequestSizeLimitCounters {
    /// Requests refused on their `content-length`, before any body byte was read.
    pub content_length: Counter,
    /// Requests whose streamed body ran over the limit.
    pub streamed: Counter,
}

impl CounterSet for RequestSizeLimitCounters {
    fn samples(&self, out: &mut Vec<Sample>) {
        sample!(
            out,
            "proxy_filters_request_size_limit_rejected_total",
            "Requests answered 413: too large a content-length, or a streamed body past the limit.",
            "counter",
            "reason=\"content_length\"",
            self.content_length.get()
        );
        sample!(
            out,
            "proxy_filters_request_size_limit_rejected_total",
            "Requests answered 413: too large a content-length, or a streamed body past the limit.",
            "counter",
            "reason=\"streamed\"",
            self.streamed.get()
        );
    }
}

/// Applies [`RequestSizeLimit`] to a service.
///
/// # Example
/// ```
/// use proxy_core::{config::ByteSize, Body, BoxError, HttpRequest};
/// use proxy_filters::body_limit::{RequestSizeLimitConfig, RequestSizeLimitLayer};
/// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let cfg = RequestSizeLimitConfig { name: None, max_bytes: ByteSize(4) };
/// let mut svc = ServiceBuilder::new()
///     .layer(RequestSizeLimitLayer::try_from(&cfg)?)
///     .service(service_fn(|_req: HttpRequest| async {
///         Ok::<_, BoxError>(http::Response::new(Body::empty()))
///     }));
/// let req = |body: &'static str| {
///     http::Request::builder()
///         .header("content-length", body.len())
///         .body(Body::from(body))
/// };
/// assert_eq!(svc.ready().await?.call(req("tiny")?).await?.status(), 200);
/// assert_eq!(svc.ready().await?.call(req("too large")?).await?.status(), 413);
/// # Ok::<_, BoxError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct RequestSizeLimitLayer {
    max_bytes: u64,
    counters: Arc<RequestSizeLimitCounters>,
}

impl RequestSizeLimitLayer {
    /// The limit of `cfg`, counting in `counters`.
    ///
    /// # Errors
    /// `max_bytes` of 0.
    pub fn new(
        cfg: &RequestSizeLimitConfig,
        counters: Arc<RequestSizeLimitCounters>,
    ) -> Result<Self, ConfigError> {
        if cfg.max_bytes.0 == 0 {
            return Err(ConfigError::invalid("max_bytes", "must be at least 1 byte"));
        }
        Ok(Self {
            max_bytes: cfg.max_bytes.0,
            counters,
        })
    }
}

impl TryFrom<&RequestSizeLimitConfig> for RequestSizeLimitLayer {
    type Error = ConfigError;

    /// [`RequestSizeLimitLayer::new`] with counters of its own.
    fn try_from(cfg: &RequestSizeLimitConfig) -> Result<Self, ConfigError> {
        Self::new(cfg, Arc::default())
    }
}

impl<S> tower_layer::Layer<S> for RequestSizeLimitLayer {
    type Service = RequestSizeLimit<S>;

    fn layer(&self, inner: S) -> RequestSizeLimit<S> {
        RequestSizeLimit {
            inner,
            max_bytes: self.max_bytes,
            counters: self.counters.clone(),
        }
    }
}

/// Answers 413 to request bodies over the limit (see [the module docs](self)).
#[derive(Debug, Clone)]
pub struct RequestSizeLimit<S> {
    inner: S,
    max_bytes: u64,
    counters: Arc<RequestSizeLimitCounters>,
}

impl<S> Service<HttpRequest> for RequestSizeLimit<S>
where
    S: Service<HttpRequest, Response = HttpResponse>,
    S::Error: Into<BoxError>,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: HttpRequest) -> Self::Future {
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match declared {
            Some(len) if len > self.max_bytes => {
                self.counters.content_length.inc();
                return ResponseFuture::TooLarge {
                    resp: Some(too_large(&req)),
                };
            }
            // The codecs hold a body to its content-length.
            Some(_) => {
                return ResponseFuture::Inner {
                    fut: self.inner.call(req),
                    tripped: None,
                }
            }
            None => {}
        }
        let hint = http_body::Body::size_hint(req.body());
        if hint.upper().is_some_and(|upper| upper <= self.max_bytes) {
            return ResponseFuture::Inner {
                fut: self.inner.call(req),
                tripped: None,
            };
        }
        let tripped = Arc::new(AtomicBool::new(false));
        let (parts, body) = req.into_parts();
        let body = Body::new(LimitedBody::new(body, self.max_bytes, tripped.clone()));
        // The 413 of a gRPC request is a gRPC answer: keep what tells.
        let content_type = parts.headers.get(http::header::CONTENT_TYPE).cloned();
        ResponseFuture::Inner {
            fut: self.inner.call(http::Request::from_parts(parts, body)),
            tripped: Some(Tripped {
                flag: tripped,
                content_type,
                counters: self.counters.clone(),
            }),
        }
    }
}

/// What a response future needs to answer 413 for a streamed body that ran over.
#[derive(Debug)]
pub struct Tripped {
    flag: Arc<AtomicBool>,
    content_type: Option<http::HeaderValue>,
    counters: Arc<RequestSizeLimitCounters>,
}

pin_project_lite::pin_project! {
    /// The future of [`RequestSizeLimit`]: the inner service's, with a body that ran
    /// over turned into 413, or a 413 at once.
    #[project = Proj]
    #[allow(missing_docs)]
    pub enum ResponseFuture<F> {
        /// The inner service's future.
        Inner { #[pin] fut: F, tripped: Option<Tripped> },
        /// A 413 on the `content-length`.
        TooLarge { resp: Option<HttpResponse> },
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<HttpResponse, E>>,
    E: Into<BoxError>,
{
    type Output = Result<HttpResponse, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Proj::TooLarge { resp } => match resp.take() {
                Some(r) => Poll::Ready(Ok(r)),
                None => Poll::Pending,
            },
            Proj::Inner { fut, tripped } => {
                let out = std::task::ready!(fut.poll(cx)).map_err(Into::into);
                match tripped {
                    Some(t) if t.flag.load(Ordering::Acquire) => {
                        t.counters.streamed.inc();
                        let mut req = HttpRequest::new(Body::empty());
                        if let Some(ct) = t.content_type.take() {
                            req.headers_mut().insert(http::header::CONTENT_TYPE, ct);
                        }
                        Poll::Ready(Ok(too_large(&req)))
                    }
                    _ => Poll::Ready(out),
                }
            }
        }
    }
}

fn too_large(req: &HttpRequest) -> HttpResponse {
    crate::local_reply::reply(
        req.headers(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "request_too_large",
        "request body too large\n",
    )
}

/// Registers `request_size_limit` (an HTTP filter, per listener or per route) in
/// `registry`; its counters are kept under `filters/request_size_limit`.
pub fn register(registry: &mut Registry) {
    registry.register_filter(NAME, |cfg, ctx| {
        let c: RequestSizeLimitConfig = cfg.parse()?;
        let family =
            ctx.metrics::<FilterMetrics<RequestSizeLimitCounters>>("filters/request_size_limit");
        let counters = family.get(
            c.name
                .as_deref()
                .or(ctx.route)
                .or(ctx.listener)
                .unwrap_or(NAME),
        );
        let layer = RequestSizeLimitLayer::new(&c, counters)?;
        Ok(Arc::new(move |inner: proxy_core::BoxHttp| {
            proxy_core::BoxHttp::new(tower_layer::Layer::layer(&layer, inner))
        }))
    });
}
