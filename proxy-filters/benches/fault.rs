//! ns per request through the fault filter when no fault is drawn (the common case:
//! a 0.1% abort) and with fault headers enabled.

// criterion_group! makes undocumented items.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use proxy_filters::fault::{FaultConfig, FaultLayer};

mod common;

fn fault(c: &mut Criterion) {
    let cfg: FaultConfig =
        proxy_core::config::from_yaml("{abort: {status: 503, abort_percent: 0.1}, seed: 1}")
            .unwrap_or_else(|e| panic!("{e}"));
    let layer = FaultLayer::new(&cfg, Default::default()).unwrap_or_else(|e| panic!("{e}"));
    common::bench(c, "fault", "abort_0.1pct", layer, common::request);
    let cfg: FaultConfig =
        proxy_core::config::from_yaml("{headers: {}}").unwrap_or_else(|e| panic!("{e}"));
    let layer = FaultLayer::new(&cfg, Default::default()).unwrap_or_else(|e| panic!("{e}"));
    common::bench(
        c,
        "fault",
        "headers_enabled_none_sent",
        layer,
        common::request,
    );
}

criterion_group!(benches, fault);
criterion_main!(benches);
