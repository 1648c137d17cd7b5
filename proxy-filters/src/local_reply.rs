//! Local answers of the filters (403, 429, fault aborts) and the future that is
//! either the inner service's or such an answer.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use proxy_core::{Body, HttpResponse};

/// A local answer with `status` and `x-proxy-error: <reason>`, which the RPC codecs
/// (Bolt, Dubbo) map to their own status. A gRPC request (`content-type:
/// application/grpc*`) gets a trailers-only gRPC answer instead: HTTP 200 with
/// `grpc-status` (`rbac_denied` -> PERMISSION_DENIED, `rate_limited` ->
/// RESOURCE_EXHAUSTED, others by the HTTP-to-gRPC mapping) and `grpc-message`.
pub(crate) fn reply(
    req: &HeaderMap,
    status: StatusCode,
    reason: &'static str,
    body: &'static str,
) -> HttpResponse {
    let grpc = proxy_core::rpc::is_grpc(req);
    let mut resp = if grpc {
        let mut resp = HttpResponse::new(Body::empty());
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert(
            HeaderName::from_static("grpc-status"),
            HeaderValue::from(u16::from(grpc_status(status, reason))),
        );
        h.insert(
            HeaderName::from_static("grpc-message"),
            HeaderValue::from_static(reason),
        );
        resp
    } else {
        let mut resp = HttpResponse::new(Body::from(body));
        *resp.status_mut() = status;
        resp
    };
    resp.headers_mut().insert(
        proxy_core::proxy::PROXY_ERROR_HEADER,
        HeaderValue::from_static(reason),
    );
    resp
}

/// The gRPC status code for a local answer.
fn grpc_status(status: StatusCode, reason: &str) -> u8 {
    match (reason, status.as_u16()) {
        ("rbac_denied", _) => 7,          // PERMISSION_DENIED
        ("rate_limited", _) => 8,         // RESOURCE_EXHAUSTED
        ("rate_limit_keys_full", _) => 8, // RESOURCE_EXHAUSTED
        (_, 200..=299) => 0,              // OK
        (_, 400) => 13,                   // INTERNAL
        (_, 401) => 16,                   // UNAUTHENTICATED
        (_, 403) => 7,                    // PERMISSION_DENIED
        (_, 404) => 12,                   // UNIMPLEMENTED
        (_, 429 | 502 | 503 | 504) => 14, // UNAVAILABLE
        _ => 2,                           // UNKNOWN
    }
}

pin_project_lite::pin_project! {
    /// The inner service's response, or a local answer.
    // pin-project-lite takes no docs on variant fields.
    #[allow(missing_docs)]
    #[project = Proj]
    pub enum LocalOr<F> {
        /// The inner service's future.
        Inner {
            #[pin]
            fut: F,
        },
        /// A local answer.
        Local {
            resp: Option<HttpResponse>,
        },
    }
}

impl<F> LocalOr<F> {
    pub(crate) fn inner(fut: F) -> Self {
        Self::Inner { fut }
    }

    pub(crate) fn local(resp: HttpResponse) -> Self {
        Self::Local { resp: Some(resp) }
    }
}

impl<F, E> Future for LocalOr<F>
where
    F: Future<Output = Result<HttpResponse, E>>,
{
    type Output = Result<HttpResponse, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Proj::Inner { fut } => fut.poll(cx),
            Proj::Local { resp } => match resp.take() {
                Some(r) => Poll::Ready(Ok(r)),
                None => Poll::Pending,
            },
        }
    }
}
