//! ns per request through the local rate limiter: a shared bucket, and a keyed
//! bucket per API key (a known key), both far from their limits.

// criterion_group! makes undocumented items.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use proxy_filters::local_rate_limit::{LocalRateLimitConfig, LocalRateLimitLayer};

mod common;

fn rate_limit(c: &mut Criterion) {
    let cfg: LocalRateLimitConfig =
        proxy_core::config::from_yaml("{rate: {requests: 1000000000, per: 1s}}")
            .unwrap_or_else(|e| panic!("{e}"));
    let layer =
        LocalRateLimitLayer::new(&cfg, Default::default()).unwrap_or_else(|e| panic!("{e}"));
    common::bench(
        c,
        "local_rate_limit",
        "shared_bucket",
        layer,
        common::request,
    );
    let cfg: LocalRateLimitConfig = proxy_core::config::from_yaml(
        "{descriptors: [{key: {header: x-api-key}, rate: {requests: 1000000000, per: 1s}}]}",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let layer =
        LocalRateLimitLayer::new(&cfg, Default::default()).unwrap_or_else(|e| panic!("{e}"));
    common::bench(
        c,
        "local_rate_limit",
        "keyed_by_header",
        layer,
        common::request,
    );
}

criterion_group!(benches, rate_limit);
criterion_main!(benches);
