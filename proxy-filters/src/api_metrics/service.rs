//! The counting service and its response future.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use proxy_core::proxy::MatchedRoute;
use tower_service::Service;

use super::Settings;
use crate::auth::Consumer;

/// Counts each request under its API and consumer (see [`super`]).
#[derive(Debug, Clone)]
pub struct ApiMetricsService<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S> ApiMetricsService<S> {
    pub(super) fn new(inner: S, settings: Arc<Settings>) -> Self {
        Self { inner, settings }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`ApiMetricsService`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        consumer: Option<Consumer>,
        started: Instant,
        settings: Arc<Settings>,
    }
}

impl<S, B, RB> Service<http::Request<B>> for ApiMetricsService<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let consumer = req.extensions().get::<Consumer>().cloned();
        ResponseFuture {
            inner: self.inner.call(req),
            consumer,
            started: Instant::now(),
            settings: self.settings.clone(),
        }
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
{
    type Output = Result<http::Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = std::task::ready!(this.inner.poll(cx));
        let elapsed = this.started.elapsed();
        let s = &**this.settings;
        let consumer = this.consumer.take();
        let id = consumer.as_ref().map(|c| &*c.id);
        match &mut result {
            Ok(resp) => {
                let status = Some(resp.status().as_u16());
                match resp.extensions().get::<MatchedRoute>() {
                    Some(MatchedRoute(route)) => s
                        .metrics
                        .api(&route.name)
                        .series(id, s.max_consumers)
                        .record(status, elapsed),
                    None => s
                        .fallback
                        .series(id, s.max_consumers)
                        .record(status, elapsed),
                }
                if let Some(c) = &consumer {
                    c.onto_response(resp);
                }
            }
            Err(_) => s.fallback.series(id, s.max_consumers).record(None, elapsed),
        }
        Poll::Ready(result)
    }
}
