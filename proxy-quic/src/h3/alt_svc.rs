//! Advertising HTTP/3 from the TCP listeners: the `alt-svc` response header.

use std::{
    task::{Context, Poll},
    time::Duration,
};

use http::{header::ALT_SVC, HeaderValue};
use tower_layer::Layer;
use tower_service::Service;

/// Adds `alt-svc: h3=":PORT"; ma=SECONDS` to every response, so that clients of a
/// TCP listener (HTTP/1.1, HTTP/2 over TLS) learn that the same names are served
/// over HTTP/3 on UDP port `PORT` of the same host (RFC 7838, RFC 9114 section
/// 3.1.1). A response that already carries `alt-svc` (from an upstream) keeps its
/// own.
///
/// Put it on the stacks of the TCP listeners that serve the names the
/// [`H3Listener`](super::H3Listener) serves, not on the HTTP/3 stack itself.
///
/// # Example
/// ```
/// use proxy_core::{Body, HttpRequest, HttpResponse};
/// use proxy_quic::h3::AltSvcLayer;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), proxy_core::BoxError> {
/// let app = tower::service_fn(|_req: HttpRequest| async {
///     Ok::<_, proxy_core::BoxError>(HttpResponse::new(Body::from("hello")))
/// });
/// let stack = ServiceBuilder::new()
///     .layer(AltSvcLayer::new(443, std::time::Duration::from_secs(86400)))
///     .service(app);
/// let resp = stack.oneshot(HttpRequest::new(Body::empty())).await?;
/// assert_eq!(resp.headers()["alt-svc"], r#"h3=":443"; ma=86400"#);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct AltSvcLayer {
    value: HeaderValue,
}

impl AltSvcLayer {
    /// Advertises HTTP/3 on UDP `port` for `max_age` (whole seconds; RFC 7838's
    /// default is one day).
    pub fn new(port: u16, max_age: Duration) -> Self {
        let text = format!("h3=\":{port}\"; ma={}", max_age.as_secs());
        // Digits, quotes, `=`, `;`, `:` and spaces: always a valid header value.
        let value = HeaderValue::from_str(&text)
            .unwrap_or_else(|_| HeaderValue::from_static("h3=\":443\""));
        Self { value }
    }

    /// The header value this layer adds.
    pub fn value(&self) -> &HeaderValue {
        &self.value
    }
}

impl<S> Layer<S> for AltSvcLayer {
    type Service = AltSvc<S>;

    fn layer(&self, inner: S) -> AltSvc<S> {
        AltSvc {
            inner,
            value: self.value.clone(),
        }
    }
}

/// The service of [`AltSvcLayer`].
#[derive(Debug, Clone)]
pub struct AltSvc<S> {
    inner: S,
    value: HeaderValue,
}

impl<S, ReqB, ResB> Service<http::Request<ReqB>> for AltSvc<S>
where
    S: Service<http::Request<ReqB>, Response = http::Response<ResB>>,
{
    type Response = http::Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqB>) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(req),
            value: Some(self.value.clone()),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`AltSvc`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        value: Option<HeaderValue>,
    }
}

impl<F, B, E> std::future::Future for ResponseFuture<F>
where
    F: std::future::Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<B>, E>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut resp = std::task::ready!(this.inner.poll(cx))?;
        if let Some(value) = this.value.take() {
            resp.headers_mut().entry(ALT_SVC).or_insert(value);
        }
        Poll::Ready(Ok(resp))
    }
}
