//! ns per request through the mirror: not sampled (1%), and sampled with an
//! empty body sent to a shadow that answers at once (the spawn included).

// criterion_group! makes undocumented items.
#![allow(missing_docs)]

use std::{future::Future, pin::Pin, sync::Arc};

use criterion::{criterion_group, criterion_main, Criterion};
use proxy_core::{Body, BoxError, HttpRequest, HttpResponse};
use proxy_filters::mirror::{MirrorConfig, MirrorLayer, Shadow};

mod common;

struct Instant;

impl Shadow for Instant {
    fn send(
        &self,
        _req: HttpRequest,
    ) -> Pin<Box<dyn Future<Output = Result<HttpResponse, BoxError>> + Send>> {
        Box::pin(async { Ok(HttpResponse::new(Body::empty())) })
    }
}

fn mirror(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let _enter = rt.enter();
    for (name, pct) in [("sampled_out_1pct", 1.0), ("copy_every_request", 100.0)] {
        let cfg: MirrorConfig = proxy_core::config::from_yaml(&format!(
            "{{cluster: shadow, sample_percent: {pct}, max_in_flight: 100000}}"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let layer = MirrorLayer::new(&cfg, Arc::new(Instant), Default::default())
            .unwrap_or_else(|e| panic!("{e}"));
        common::bench(c, "mirror", name, layer, common::request);
    }
}

criterion_group!(benches, mirror);
criterion_main!(benches);
