//! ns per connection through the connection limit (admit, serve, release), with a
//! per-source-IP limit; the stream pair is made outside the measurement.

// criterion_group! makes undocumented items.
#![allow(missing_docs)]

use std::future::ready;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use proxy_core::{BoxError, Connection, Stream};
use proxy_filters::conn_limit::{ConnLimitConfig, ConnLimitLayer};
use tower::{Layer, Service};

mod common;

fn conn_limit(c: &mut Criterion) {
    let cfg: ConnLimitConfig =
        proxy_core::config::from_yaml("{max_connections: 100000, max_per_source_ip: 1000}")
            .unwrap_or_else(|e| panic!("{e}"));
    let layer = ConnLimitLayer::new(&cfg, Default::default()).unwrap_or_else(|e| panic!("{e}"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let _enter = rt.enter();
    let inner = tower::service_fn(|_conn: Connection| ready(Ok::<(), BoxError>(())));
    let mut svc = layer.layer(inner);
    c.bench_function("conn_limit/admit_and_release", |b| {
        b.iter_batched(
            || {
                let (a, _b) =
                    std::os::unix::net::UnixStream::pair().unwrap_or_else(|e| panic!("{e}"));
                a.set_nonblocking(true).unwrap_or_else(|e| panic!("{e}"));
                let stream = tokio::net::UnixStream::from_std(a).unwrap_or_else(|e| panic!("{e}"));
                Connection {
                    stream: Stream::Unix(stream),
                    peer: Some("10.1.2.3:40000".parse().unwrap_or_else(|e| panic!("{e}"))),
                    listener: "bench".into(),
                    secure: false,
                    extensions: http::Extensions::new(),
                }
            },
            |conn| common::now(svc.call(conn)).unwrap_or_else(|e| panic!("{e}")),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, conn_limit);
criterion_main!(benches);
