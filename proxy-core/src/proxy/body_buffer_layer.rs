//! [`BodyBuffer`] as a tower layer, for stacks assembled in code (a listener's own
//! `Proxy` applies its `request_body_buffer` itself).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use super::BodyBuffer;
use crate::{BoxError, HttpRequest, HttpResponse};

/// Reads small request bodies whole before the inner service sees them, and holds
/// longer ones to the minimum rate (see [`BodyBuffer`]): put it in front of
/// [`super::ClusterService`] so that a client that trickles a body holds no upstream
/// connection, or not for long. A body too slow fails with
/// [`crate::ProxyError::RequestTimeout`] (408 under [`super::LocalReplyLayer`]).
///
/// # Example
/// ```
/// use std::time::Duration;
/// use proxy_core::{proxy::{BodyBuffer, BodyBufferLayer}, Body, HttpRequest, HttpResponse};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let stack = ServiceBuilder::new()
///     .layer(BodyBufferLayer::new(BodyBuffer::new(16 * 1024, Duration::from_secs(10))))
///     .service(service_fn(|req: HttpRequest| async move {
///         Ok::<_, std::convert::Infallible>(HttpResponse::new(req.into_body()))
///     }));
/// let resp = stack.oneshot(HttpRequest::new(Body::from("ping"))).await.unwrap();
/// assert_eq!(resp.status(), 200);
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct BodyBufferLayer {
    buffer: BodyBuffer,
}

impl BodyBufferLayer {
    /// Reads the bodies `buffer` names whole first.
    pub fn new(buffer: BodyBuffer) -> Self {
        Self { buffer }
    }
}

impl<S> tower_layer::Layer<S> for BodyBufferLayer {
    type Service = BodyBufferService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyBufferService {
            inner,
            buffer: self.buffer,
        }
    }
}

/// The service of [`BodyBufferLayer`].
#[derive(Debug, Clone)]
pub struct BodyBufferService<S> {
    inner: S,
    buffer: BodyBuffer,
}

impl<S> tower_service::Service<HttpRequest> for BodyBufferService<S>
where
    S: tower_service::Service<HttpRequest, Response = HttpResponse> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: HttpRequest) -> Self::Future {
        if !self.buffer.wants(req.body()) {
            self.buffer.pace(&mut req);
            let answer = self.inner.call(req);
            return Box::pin(async move { answer.await.map_err(Into::into) });
        }
        // The service made ready goes with this request; a clone takes its place.
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let buffer = self.buffer;
        Box::pin(async move {
            buffer.read_whole(req.body_mut()).await?;
            inner.call(req).await.map_err(Into::into)
        })
    }
}
