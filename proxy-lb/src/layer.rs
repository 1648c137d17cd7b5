//! The balancers as a tower [`Layer`], for stacks composed by hand: [`PickLayer`]
//! picks a backend for each request with any balancer of this crate and puts the
//! choice in the request extensions as [`Picked`]; the inner service sends it there.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use arc_swap::ArcSwap;
use http::{request::Parts, Request};
use proxy_core::BoxError;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    hash_balancer::{HashBalancer, HashTable},
    least_request::LeastRequest,
    random::Random,
    round_robin::RoundRobin,
    Backend,
};

/// A balancer over backends of type `B`: what [`PickLayer`] needs. Implemented by
/// every balancer of this crate for every [`Backend`].
pub trait Picker<B>: Send + Sync + 'static {
    /// The index of the backend for the request with head `req`, or `None` when no
    /// backend is usable.
    fn pick(&self, backends: &[B], req: &Parts) -> Option<usize>;

    /// The backend set changed: build tables now, off the request path.
    fn backends_changed(&self, backends: &Arc<[B]>) {
        let _ = backends;
    }
}

impl<B: Backend + Send + Sync + 'static> Picker<B> for Random {
    fn pick(&self, backends: &[B], _req: &Parts) -> Option<usize> {
        self.pick_from(backends)
    }

    fn backends_changed(&self, backends: &Arc<[B]>) {
        self.prepare(backends);
    }
}

impl<B: Backend> Picker<B> for LeastRequest {
    fn pick(&self, backends: &[B], _req: &Parts) -> Option<usize> {
        self.pick_from(backends)
    }
}

impl<B: Backend + Send + Sync + 'static> Picker<B> for RoundRobin {
    fn pick(&self, backends: &[B], _req: &Parts) -> Option<usize> {
        self.pick_from(backends)
    }

    fn backends_changed(&self, backends: &Arc<[B]>) {
        self.prepare(backends);
    }
}

impl<B: Backend + Send + Sync + 'static, T: HashTable> Picker<B> for HashBalancer<T> {
    fn pick(&self, backends: &[B], req: &Parts) -> Option<usize> {
        self.pick_from(backends, req)
    }

    fn backends_changed(&self, backends: &Arc<[B]>) {
        self.prepare(backends);
    }
}

/// The backend chosen for a request, in its extensions.
pub struct Picked<B> {
    backends: Arc<[B]>,
    index: usize,
}

impl<B> Picked<B> {
    /// The index of the chosen backend in its set.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The chosen backend.
    pub fn backend(&self) -> &B {
        &self.backends[self.index]
    }
}

impl<B> Clone for Picked<B> {
    fn clone(&self) -> Self {
        Self {
            backends: self.backends.clone(),
            index: self.index,
        }
    }
}

impl<B> fmt::Debug for Picked<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Picked")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// No backend could take the request (none healthy, or the set is empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no healthy backend to pick")]
#[non_exhaustive]
pub struct NoHealthyBackend;

/// The backend set, swapped whole.
struct Set<B> {
    backends: Arc<[B]>,
}

/// Picks a backend per request with a balancer and inserts [`Picked`] into the
/// request extensions; answers [`NoHealthyBackend`] without calling the inner
/// service when none is usable. Cheap to clone: the balancer and the backend set are
/// shared, and [`PickLayer::set_backends`] swaps the set for every service made from
/// it.
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use proxy_lb::{layer::{PickLayer, Picked}, round_robin::RoundRobin, StaticBackend};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # tokio_test_block_on(async {
/// let backends: Arc<[StaticBackend]> =
///     vec![StaticBackend::new("a", 1), StaticBackend::new("b", 1)].into();
/// let svc = ServiceBuilder::new()
///     .layer(PickLayer::new(RoundRobin::default(), backends))
///     .service(service_fn(|req: http::Request<()>| async move {
///         let picked = req.extensions().get::<Picked<StaticBackend>>().cloned();
///         Ok::<_, std::convert::Infallible>(picked.map(|p| p.backend().id().to_owned()))
///     }));
/// let first = svc.clone().oneshot(http::Request::new(())).await.unwrap();
/// let second = svc.oneshot(http::Request::new(())).await.unwrap();
/// assert_ne!(first, second);
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
pub struct PickLayer<P, B> {
    picker: Arc<P>,
    set: Arc<ArcSwap<Set<B>>>,
}

impl<P, B> Clone for PickLayer<P, B> {
    fn clone(&self) -> Self {
        Self {
            picker: self.picker.clone(),
            set: self.set.clone(),
        }
    }
}

impl<P, B> fmt::Debug for PickLayer<P, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PickLayer")
            .field("backends", &self.set.load().backends.len())
            .finish_non_exhaustive()
    }
}

impl<P: Picker<B>, B> PickLayer<P, B> {
    /// A layer picking among `backends` with `picker`.
    pub fn new(picker: P, backends: Arc<[B]>) -> Self {
        picker.backends_changed(&backends);
        Self {
            picker: Arc::new(picker),
            set: Arc::new(ArcSwap::from_pointee(Set { backends })),
        }
    }

    /// Replaces the backend set (the balancer rebuilds its tables first).
    pub fn set_backends(&self, backends: Arc<[B]>) {
        self.picker.backends_changed(&backends);
        self.set.store(Arc::new(Set { backends }));
    }
}

impl<S, P, B> Layer<S> for PickLayer<P, B> {
    type Service = Pick<S, P, B>;

    fn layer(&self, inner: S) -> Pick<S, P, B> {
        Pick {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`PickLayer`].
pub struct Pick<S, P, B> {
    inner: S,
    layer: PickLayer<P, B>,
}

impl<S: Clone, P, B> Clone for Pick<S, P, B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, P, B> fmt::Debug for Pick<S, P, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pick")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, P, B, Body> Service<Request<Body>> for Pick<S, P, B>
where
    S: Service<Request<Body>>,
    S::Error: Into<BoxError>,
    P: Picker<B>,
    B: Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        let set = self.layer.set.load();
        match self.layer.picker.pick(&set.backends, &parts) {
            Some(index) if index < set.backends.len() => {
                parts.extensions.insert(Picked {
                    backends: set.backends.clone(),
                    index,
                });
                ResponseFuture::inner(self.inner.call(Request::from_parts(parts, body)))
            }
            _ => ResponseFuture::failed(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Pick`].
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F> {
        Inner { #[pin] future: F },
        Failed { error: Option<NoHealthyBackend> },
    }
}

impl<F> ResponseFuture<F> {
    fn inner(future: F) -> Self {
        Self {
            state: State::Inner { future },
        }
    }

    fn failed() -> Self {
        Self {
            state: State::Failed {
                error: Some(NoHealthyBackend),
            },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { future } => future.poll(cx).map_err(Into::into),
            StateProj::Failed { error } => {
                Poll::Ready(Err(error.take().unwrap_or(NoHealthyBackend).into()))
            }
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.state {
            State::Inner { .. } => "ResponseFuture::Inner",
            State::Failed { .. } => "ResponseFuture::Failed",
        })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::{service_fn, ServiceExt};

    use super::*;
    use crate::{
        hash_policy::HashPolicyConfig,
        maglev::{Maglev, MaglevConfig},
        StaticBackend,
    };

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .map(|rt| rt.block_on(f))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn echo_id(req: Request<()>) -> impl Future<Output = Result<String, Infallible>> {
        let id = req
            .extensions()
            .get::<Picked<StaticBackend>>()
            .map(|p| p.backend().id().to_owned())
            .unwrap_or_default();
        async move { Ok(id) }
    }

    #[test]
    fn hash_keys_stick_and_sets_swap() {
        let maglev = Maglev::new(&MaglevConfig {
            hash_policy: vec![HashPolicyConfig::header(http::HeaderName::from_static(
                "x-user",
            ))],
            table_size: 251,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let set: Arc<[StaticBackend]> = (0..5)
            .map(|i| StaticBackend::new(format!("b{i}"), 1))
            .collect();
        let layer = PickLayer::new(maglev, set);
        let svc = layer.layer(service_fn(echo_id));
        let req = || {
            Request::builder()
                .header("x-user", "ann")
                .body(())
                .unwrap_or_default()
        };
        let a = block_on(svc.clone().oneshot(req())).unwrap_or_default();
        assert_eq!(block_on(svc.clone().oneshot(req())).unwrap_or_default(), a);

        let only: Arc<[StaticBackend]> = vec![StaticBackend::new("solo", 1)].into();
        layer.set_backends(only);
        assert_eq!(
            block_on(svc.clone().oneshot(req())).unwrap_or_default(),
            "solo"
        );

        let down: Arc<[StaticBackend]> = vec![StaticBackend::new("down", 1)].into();
        down[0].set_healthy(false);
        layer.set_backends(down);
        let err = block_on(svc.oneshot(req())).err();
        assert!(err.is_some_and(|e| e.is::<NoHealthyBackend>()));
    }
}
