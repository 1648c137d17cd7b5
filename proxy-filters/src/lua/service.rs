//! The service: `on_request` before the inner service, `on_response` after it, a 500
//! when the script fails.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderMap, HeaderValue, StatusCode};
use proxy_core::{HttpRequest, HttpResponse};
use tower_service::Service;

use super::{
    api::{RequestView, ResponseView},
    sandbox::Failure,
    states, Script,
};
use crate::local_reply::{self, LocalOr};

/// Runs a Lua script on each request and response (see [`super`]).
#[derive(Debug, Clone)]
pub struct LuaFilter<S> {
    inner: S,
    script: Arc<Script>,
}

impl<S> LuaFilter<S> {
    pub(crate) fn new(inner: S, script: Arc<Script>) -> Self {
        Self { inner, script }
    }
}

impl Script {
    /// Counts `failure` and makes its 500.
    fn failed(&self, failure: Failure, message: &str, grpc: bool) -> HttpResponse {
        self.counters.fail(failure);
        tracing::debug!(reason = failure.as_str(), %message, "lua script failed");
        let mut headers = HeaderMap::new();
        if grpc {
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
        }
        local_reply::reply(
            &headers,
            StatusCode::INTERNAL_SERVER_ERROR,
            failure.proxy_error(),
            "script error\n",
        )
    }
}

impl<S> Service<HttpRequest> for LuaFilter<S>
where
    S: Service<HttpRequest, Response = HttpResponse>,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: HttpRequest) -> Self::Future {
        let script = &self.script;
        script.counters.calls.inc();
        let (parts, body) = req.into_parts();
        let grpc = proxy_core::rpc::is_grpc(&parts.headers);
        let peer = parts
            .extensions
            .get::<proxy_core::proxy::ConnInfo>()
            .and_then(|c| c.peer);
        let view = RequestView {
            parts,
            peer,
            reply: None,
        };
        let ran = states::with_state(script, |state| {
            let view = state.on_request(view)?;
            Ok((view, state.has_on_response()))
        });
        let local = |resp| ResponseFuture {
            inner: LocalOr::local(resp),
            script: None,
            grpc,
        };
        match ran {
            Err((failure, message)) => local(script.failed(failure, &message, grpc)),
            Ok((mut view, on_response)) => match view.reply.take() {
                Some(reply) => {
                    script.counters.local_replies.inc();
                    local(reply.into_response())
                }
                None => {
                    let req = HttpRequest::from_parts(view.parts, body);
                    ResponseFuture {
                        inner: LocalOr::inner(self.inner.call(req)),
                        script: on_response.then(|| script.clone()),
                        grpc,
                    }
                }
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`LuaFilter`]: the inner service's answer through
    /// `on_response`, or the script's local answer, or its 500.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: LocalOr<F>,
        // Set when `on_response` runs on the inner service's answer.
        script: Option<Arc<Script>>,
        grpc: bool,
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<HttpResponse, E>>,
{
    type Output = Result<HttpResponse, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let resp = std::task::ready!(this.inner.poll(cx))?;
        let Some(script) = this.script.take() else {
            return Poll::Ready(Ok(resp));
        };
        let (parts, body) = resp.into_parts();
        let ran = states::with_state(&script, |state| state.on_response(ResponseView { parts }));
        Poll::Ready(Ok(match ran {
            Ok(view) => HttpResponse::from_parts(view.parts, body),
            Err((failure, message)) => script.failed(failure, &message, *this.grpc),
        }))
    }
}
