//! The listener's HTTP filters per route: the stack as configured, and the
//! route-specific stacks that `filter_overrides` ask for (a filter turned off, on, or
//! run with another config), all built once per snapshot.
//!
//! A listener without overrides keeps its plain stack: no lookup is added. With
//! overrides, the listener's stack is one dispatching service that matches the route
//! on the request as it arrives (before any listener filter changes it, as Envoy's
//! cached route) and passes the request to that route's stack; the request path then
//! routes as always.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use tower::ServiceExt;

use crate::{registry::LayerFn, snapshot::Routing, BoxError, BoxHttp, HttpRequest, HttpResponse};

/// A listener's filter stacks, as layers (outermost first).
#[derive(Default)]
pub(crate) struct ListenerStacks {
    /// The filters of a route without overrides (the listener's, without the
    /// `disabled` ones).
    pub(crate) default: Vec<LayerFn>,
    /// Route-specific stacks; a route's `listener_stack` indexes them.
    pub(crate) variants: Vec<Vec<LayerFn>>,
}

impl ListenerStacks {
    /// The listener's layers: the default ones as they are when no route overrides a
    /// filter, else one layer that picks the stack by the route of `routing`.
    pub(crate) fn into_layers(self, routing: Arc<Routing>) -> Vec<LayerFn> {
        if self.variants.is_empty() {
            return self.default;
        }
        let stacks = Arc::new(self);
        let layer: LayerFn = Arc::new(move |inner: BoxHttp| {
            let build = |layers: &[LayerFn]| {
                layers
                    .iter()
                    .rev()
                    .fold(inner.clone(), |svc, layer| layer(svc))
            };
            BoxHttp::new(PerRouteStack {
                routing: routing.clone(),
                default: build(&stacks.default),
                variants: stacks.variants.iter().map(|v| build(v)).collect(),
            })
        });
        vec![layer]
    }
}

/// Passes each request to the filter stack of the route it matches.
#[derive(Clone)]
struct PerRouteStack {
    routing: Arc<Routing>,
    default: BoxHttp,
    variants: Arc<[BoxHttp]>,
}

impl tower_service::Service<HttpRequest> for PerRouteStack {
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = tower::util::Oneshot<BoxHttp, HttpRequest>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Each stack is driven to readiness by its own `oneshot`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: HttpRequest) -> Self::Future {
        let stack = self
            .routing
            .routes
            .find(
                crate::proxy::request_authority(&req),
                req.method(),
                req.uri().path(),
                req.headers(),
            )
            .and_then(|r| r.listener_stack.get())
            .and_then(|&i| self.variants.get(i))
            .unwrap_or(&self.default);
        stack.clone().oneshot(req)
    }
}
