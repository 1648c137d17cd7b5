//! Local answers of the filters (403, 429, fault aborts) and the future that is
//! either the inner service's or such an answer.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http::{HeaderName, HeaderValue, StatusCode};
use proxy_core::{Body, HttpResponse};

/// A local answer with `status` and `x-proxy-error: <reason>`, which RPC codecs map
/// to their own status.
pub(crate) fn reply(status: StatusCode, reason: &'static str, body: &'static str) -> HttpResponse {
    let mut resp = HttpResponse::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        HeaderName::from_static("x-proxy-error"),
        HeaderValue::from_static(reason),
    );
    resp
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
