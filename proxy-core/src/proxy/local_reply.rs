//! Local replies: the proxy's own answers, with the status of the error and the
//! `x-proxy-error` header naming the reason; [`LocalReplyLayer`] turns every error
//! that reaches the edge of a request stack into one.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http::{header, HeaderName, HeaderValue, Response};

use crate::{Body, BoxError, HttpRequest, HttpResponse, ProxyError};

/// The header of a local reply that names why the proxy answered itself
/// (`no_route`, `connect_failure`, `upstream_timeout`, ...): set by every local
/// reply, read by access logs and by protocol plug-ins to pick their own status.
pub const PROXY_ERROR_HEADER: HeaderName = HeaderName::from_static("x-proxy-error");

/// The header of a local reply with the finer class of the failure, when there is
/// one ([`ProxyError::detail`]: `connection_refused`, `tls_unknown_issuer`, ...).
pub const PROXY_ERROR_DETAIL_HEADER: HeaderName = HeaderName::from_static("x-proxy-error-detail");

/// A locally generated answer: the status of `err`, a short body, and the
/// `x-proxy-error` header naming the reason.
pub fn local_reply(err: &ProxyError) -> HttpResponse {
    let reason = err.reason();
    let detail = err.detail();
    // A connect failure says why (the causes are the OS's and the transport's words,
    // no secrets); other errors keep their one line.
    let text = match err {
        ProxyError::Connect { .. } => format!("{}\n", crate::DisplayChain(err)),
        _ => format!("{err}\n"),
    };
    let mut resp = Response::new(Body::from(text));
    *resp.status_mut() = err.status();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    h.insert(PROXY_ERROR_HEADER, HeaderValue::from_static(reason));
    if let Some(d) = detail {
        h.insert(PROXY_ERROR_DETAIL_HEADER, HeaderValue::from_static(d));
    }
    resp
}

/// The answer for an error that reached the edge of a request stack: a
/// [`ProxyError`] found in its source chain answers with its own status, tower's
/// timeout (`tower::timeout::error::Elapsed`) with 504, anything else with 500.
pub fn reply_for_error(err: &BoxError) -> HttpResponse {
    if let Some(p) = ProxyError::find(&**err) {
        return local_reply(p);
    }
    if err.is::<tower::timeout::error::Elapsed>() {
        return local_reply(&ProxyError::Timeout);
    }
    tracing::warn!(error = %crate::DisplayChain(&**err), "request stack failed");
    local_reply(&ProxyError::Internal)
}

/// Answers every error of the inner service locally ([`reply_for_error`]): put it at
/// the edge of a request stack assembled in code, so that a connect failure is a 503,
/// a timeout a 504 and a reset upstream a 502, each with `x-proxy-error`.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use proxy_core::{proxy::LocalReplyLayer, Body, BoxError, HttpRequest, HttpResponse};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let slow = tower::service_fn(|_req: HttpRequest| async {
///     tokio::time::sleep(Duration::from_secs(5)).await;
///     Ok::<_, BoxError>(HttpResponse::new(Body::empty()))
/// });
/// let stack = ServiceBuilder::new()
///     .layer(LocalReplyLayer)
///     .timeout(Duration::from_millis(10))
///     .service(slow);
/// let resp = stack.oneshot(HttpRequest::new(Body::empty())).await.unwrap();
/// assert_eq!(resp.status(), 504);
/// assert_eq!(resp.headers()["x-proxy-error"], "upstream_timeout");
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalReplyLayer;

impl<S> tower_layer::Layer<S> for LocalReplyLayer {
    type Service = LocalReply<S>;
    fn layer(&self, inner: S) -> LocalReply<S> {
        LocalReply { inner }
    }
}

/// The service of [`LocalReplyLayer`].
#[derive(Debug, Clone)]
pub struct LocalReply<S> {
    inner: S,
}

impl<S> tower_service::Service<HttpRequest> for LocalReply<S>
where
    S: tower_service::Service<HttpRequest, Response = HttpResponse>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: HttpRequest) -> Self::Future {
        let fut = self.inner.call(req);
        Box::pin(async move {
            Ok(match fut.await {
                Ok(resp) => resp,
                Err(e) => reply_for_error(&e.into()),
            })
        })
    }
}
