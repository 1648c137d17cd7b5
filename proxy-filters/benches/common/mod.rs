//! Shared bench helpers: a trivial inner service, a typical request, and polling a
//! future that is ready at once (no runtime in the measured loop).

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::{
    convert::Infallible,
    future::{ready, Future, Ready},
    pin::pin,
    task::{Context, Poll, Waker},
};

use criterion::{black_box, Criterion};
use proxy_core::{Body, HttpRequest, HttpResponse};
use tower::{Layer, Service};

/// The inner service: answers 200 with an empty body at once.
pub type Inner = tower::util::ServiceFn<fn(HttpRequest) -> Ready<Result<HttpResponse, Infallible>>>;

pub fn inner() -> Inner {
    fn answer(_req: HttpRequest) -> Ready<Result<HttpResponse, Infallible>> {
        ready(Ok(HttpResponse::new(Body::empty())))
    }
    tower::service_fn(answer as fn(HttpRequest) -> Ready<Result<HttpResponse, Infallible>>)
}

/// A GET with a handful of headers, like a typical API call.
pub fn request() -> HttpRequest {
    http::Request::get("http://api.local/v1/users/42?expand=1")
        .header("host", "api.local")
        .header("user-agent", "bench/1.0")
        .header("accept", "application/json")
        .header("x-api-key", "key-123")
        .header("x-request-id", "0af7651916cd43dd8448eb211c80319c")
        .body(Body::empty())
        .unwrap()
}

/// Polls `f` once; it must be ready.
pub fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the future was not ready"),
    }
}

/// Benches one request through `layer` over the trivial inner service (request
/// building included), next to the same without the layer as the baseline.
pub fn bench<L>(
    c: &mut Criterion,
    group: &str,
    name: &str,
    layer: L,
    make: impl Fn() -> HttpRequest,
) where
    L: Layer<Inner>,
    L::Service: Service<HttpRequest, Response = HttpResponse>,
    <L::Service as Service<HttpRequest>>::Error: std::fmt::Debug,
{
    let mut g = c.benchmark_group(group);
    let mut base = inner();
    g.bench_function("baseline_no_filter", |b| {
        b.iter(|| black_box(now(base.call(make())).unwrap()))
    });
    let mut svc = layer.layer(inner());
    g.bench_function(name, |b| {
        b.iter(|| {
            now(std::future::poll_fn(|cx| svc.poll_ready(cx))).unwrap();
            black_box(now(svc.call(make())).unwrap())
        })
    });
    g.finish();
}
