//! ns per request through header rewriting: two request and two response changes.

// criterion_group! makes undocumented items.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use proxy_filters::header_rewrite::{HeaderRewriteConfig, HeaderRewriteLayer};

mod common;

fn header_rewrite(c: &mut Criterion) {
    let cfg: HeaderRewriteConfig = proxy_core::config::from_yaml("{request: {remove: [x-api-key], set: [{name: x-env, value: prod}]}, response: {set: [{name: x-served-by, value: edge}], remove: [server]}}",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let layer = HeaderRewriteLayer::new(&cfg).unwrap_or_else(|e| panic!("{e}"));
    common::bench(
        c,
        "header_rewrite",
        "set_and_remove",
        layer,
        common::request,
    );
}

criterion_group!(benches, header_rewrite);
criterion_main!(benches);
