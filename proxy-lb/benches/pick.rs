//! Per-request picks without a key: least request (P2C), round robin, random.

// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use std::{hint::black_box, sync::Arc};

use criterion::{criterion_group, criterion_main, Criterion};
use proxy_lb::{
    least_request::LeastRequest, random::Random, round_robin::RoundRobin, StaticBackend,
};

fn backends(n: usize) -> Arc<[StaticBackend]> {
    (0..n)
        .map(|i| {
            let b = StaticBackend::new(
                format!("10.0.{}.{}:80", i / 256, i % 256),
                1 + (i % 3) as u32,
            );
            b.set_active((i * 7 % 13) as u64);
            b
        })
        .collect()
}

fn picks(c: &mut Criterion) {
    let b = backends(100);
    let p2c = LeastRequest::default();
    c.bench_function("p2c_pick_100_backends", |x| {
        x.iter(|| p2c.pick_from(black_box(&b)))
    });
    let rr = RoundRobin::default();
    rr.prepare(&b);
    c.bench_function("round_robin_pick_100_backends", |x| {
        x.iter(|| rr.pick_from(black_box(&b)))
    });
    let random = Random::default();
    random.prepare(&b);
    c.bench_function("random_weighted_pick_100_backends", |x| {
        x.iter(|| random.pick_from(black_box(&b)))
    });
}

criterion_group!(benches, picks);
criterion_main!(benches);
