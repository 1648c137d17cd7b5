//! Per-worker recycled homes for the request futures of the HTTP/1.1 connection loop
//! and of [`super::Proxy`] called as a tower service.
//!
//! A request forwarded by the proxy runs as one future of a couple of KiB. The
//! HTTP/1.1 connection loop does not carry it in its own state (a connection between
//! requests keeps only the loop's state), and a service's future is returned by
//! value through boxed stacks, so it lives on the heap while the request is in
//! flight. A fresh box per request is an allocation too large for the
//! allocator's per-thread cache, the costliest of a request's allocations; instead
//! each worker keeps the boxes of finished requests and the next request's future is
//! written into one of them.

use std::{
    cell::RefCell,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use super::{forward, local_reply, ConnInfo};
use crate::{
    informational::Informational, snapshot::Routing, HttpRequest, HttpResponse, ProxyError,
};

/// Where a request came from, when not in its extensions: its connection's facts and
/// where its interim answers go.
pub(crate) type Downstream = (ConnInfo, Option<Informational>);

/// Boxes a worker keeps: enough for the requests a burst of answers ends together.
const KEEP: usize = 256;

/// A home for one request future at a time.
trait Slot: Send {
    /// Puts the future forwarding `req` in this (empty) home.
    fn start(
        self: Pin<&mut Self>,
        routing: Arc<Routing>,
        req: HttpRequest,
        from: Option<Downstream>,
    );
    /// Polls the future; once it is done the home is empty again.
    fn poll_response(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<HttpResponse>>;
    /// Drops the future, if any (a request given up).
    fn clear(self: Pin<&mut Self>);
}

pin_project_lite::pin_project! {
    struct Home<M, F> {
        make: M,
        #[pin]
        fut: Option<F>,
    }
}

impl<M, F> Slot for Home<M, F>
where
    M: Fn(Arc<Routing>, HttpRequest, Option<Downstream>) -> F + Send,
    F: Future<Output = HttpResponse> + Send,
{
    fn start(
        self: Pin<&mut Self>,
        routing: Arc<Routing>,
        req: HttpRequest,
        from: Option<Downstream>,
    ) {
        let mut this = self.project();
        this.fut.set(Some((this.make)(routing, req, from)));
    }

    fn poll_response(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<HttpResponse>> {
        let mut this = self.project();
        let Some(fut) = this.fut.as_mut().as_pin_mut() else {
            return Poll::Ready(None);
        };
        let resp = ready!(fut.poll(cx));
        this.fut.set(None);
        Poll::Ready(Some(resp))
    }

    fn clear(self: Pin<&mut Self>) {
        self.project().fut.set(None);
    }
}

/// Forwards `req`; where it came from comes with it (`from`) or in its extensions.
async fn run(routing: Arc<Routing>, req: HttpRequest, from: Option<Downstream>) -> HttpResponse {
    let (conn, informational) = match &from {
        Some((conn, informational)) => (Some(conn), informational.as_ref()),
        None => (None, None),
    };
    match forward::forward(routing, req, conn, informational).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
}

thread_local! {
    static FREE: RefCell<Vec<Pin<Box<dyn Slot>>>> = const { RefCell::new(Vec::new()) };
}

/// A request forwarded in a recycled home; the home goes back to the worker when this
/// is dropped.
pub(crate) struct Forwarding(Option<Pin<Box<dyn Slot>>>);

impl Forwarding {
    pub(super) fn start(routing: Arc<Routing>, req: HttpRequest, from: Option<Downstream>) -> Self {
        let mut home = FREE
            .try_with(|f| f.borrow_mut().pop())
            .ok()
            .flatten()
            .unwrap_or_else(|| {
                Box::pin(Home {
                    make: run,
                    fut: None,
                })
            });
        home.as_mut().start(routing, req, from);
        Self(Some(home))
    }
}

impl Future for Forwarding {
    type Output = HttpResponse;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<HttpResponse> {
        let resp = match &mut self.0 {
            Some(home) => ready!(home.as_mut().poll_response(cx)),
            None => None,
        };
        // Polled after its end (never done by the connection loop): an error answer
        // rather than a panic.
        Poll::Ready(resp.unwrap_or_else(|| local_reply(&ProxyError::Internal)))
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        let Some(mut home) = self.0.take() else {
            return;
        };
        // A request given up mid-way ends here, before its home goes back.
        home.as_mut().clear();
        let _ = FREE.try_with(|f| {
            let mut free = f.borrow_mut();
            if free.len() < KEEP {
                free.push(home);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_home_is_reused_and_a_request_given_up_is_dropped() {
        let routing = super::super::routing_without_routes();
        let conn = ConnInfo::new(None, false);
        // No route: answered locally, and the home goes back to the worker.
        let resp = Forwarding::start(
            routing.clone(),
            HttpRequest::new(crate::Body::empty()),
            Some((conn.clone(), None)),
        )
        .await;
        assert_eq!(resp.status(), http::StatusCode::NOT_FOUND);
        let kept = FREE.with(|f| f.borrow().len());
        assert!(kept >= 1);
        let again = Forwarding::start(routing, HttpRequest::new(crate::Body::empty()), None);
        assert_eq!(FREE.with(|f| f.borrow().len()), kept - 1);
        drop(again);
        assert_eq!(FREE.with(|f| f.borrow().len()), kept);
    }

    #[tokio::test]
    async fn the_proxy_called_as_a_service_forwards_in_a_recycled_home() {
        use tower_service::Service;
        let routing = Arc::new(arc_swap::ArcSwap::new(
            super::super::routing_without_routes(),
        ));
        let mut proxy = super::super::Proxy::new(routing);
        let first = proxy.call(HttpRequest::new(crate::Body::empty()));
        let resp = first.await.expect("infallible");
        assert_eq!(resp.status(), http::StatusCode::NOT_FOUND);
        let kept = FREE.with(|f| f.borrow().len());
        assert!(kept >= 1, "the home went back to the worker");
        // The next call takes that home rather than a fresh box, and gives it back
        // when dropped unfinished.
        let second = proxy.call(HttpRequest::new(crate::Body::empty()));
        assert_eq!(FREE.with(|f| f.borrow().len()), kept - 1);
        drop(second);
        assert_eq!(FREE.with(|f| f.borrow().len()), kept);
    }
}
