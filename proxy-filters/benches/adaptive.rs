//! Cost of the adaptive limiter's admission decision per request: the whole filter
//! (interface lookup, gate compare-and-swap, latency record, release) around an inner
//! service that answers at once, against that inner service alone, and the rejection
//! path (limit reached).
#![allow(missing_docs, clippy::unwrap_used)]

use std::{
    convert::Infallible,
    future::{ready, Future, Ready},
    hint::black_box,
    pin::pin,
    task::{Context, Poll, Waker},
};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use proxy_filters::adaptive::{AdaptiveConcurrencyLayer, AdaptiveConfig};
use tower::{service_fn, Layer, Service};

type Resp = Response<Bytes>;

fn inner() -> impl Service<
    Request<()>,
    Response = Resp,
    Error = Infallible,
    Future = Ready<Result<Resp, Infallible>>,
> + Clone {
    service_fn(|_req: Request<()>| ready(Ok::<_, Infallible>(Response::new(Bytes::new()))))
}

fn poll_now<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("the inner service answers at once"),
    }
}

fn request() -> Request<()> {
    Request::builder().uri("/api/users/42").body(()).unwrap()
}

fn config(yaml: &str) -> AdaptiveConfig {
    proxy_core::config::from_yaml(yaml).unwrap()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("adaptive");

    let mut plain = inner();
    g.bench_function("inner_alone", |b| {
        b.iter(|| black_box(poll_now(plain.call(black_box(request()))).unwrap()))
    });

    // No runtime here: the control loop does not run, the limit stays at its start.
    let layer = AdaptiveConcurrencyLayer::new(&config("{cpu: null}")).unwrap();
    let mut svc = layer.layer(inner());
    g.bench_function("admitted", |b| {
        b.iter(|| black_box(poll_now(svc.call(black_box(request()))).unwrap()))
    });

    let layer = AdaptiveConcurrencyLayer::new(&config("{cpu: null, cost: null}")).unwrap();
    let mut svc = layer.layer(inner());
    g.bench_function("admitted_without_cost_table", |b| {
        b.iter(|| black_box(poll_now(svc.call(black_box(request()))).unwrap()))
    });

    // Limit 1 held by a request that never completes: every call is rejected.
    let layer = AdaptiveConcurrencyLayer::new(&config(
        "{cpu: null, min_limit: 1, max_limit: 1, headroom: null}",
    ))
    .unwrap();
    let mut holder = layer.layer(service_fn(|_req: Request<()>| {
        std::future::pending::<Result<Resp, Infallible>>()
    }));
    let held = holder.call(request());
    let mut svc = layer.layer(inner());
    assert_eq!(poll_now(svc.call(request())).unwrap().status(), 503);
    g.bench_function("rejected", |b| {
        b.iter(|| black_box(poll_now(svc.call(black_box(request()))).unwrap()))
    });
    drop(held);
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
