//! Ring hash lookup (1,000 backends, default ring sizes) and ring build.

// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use std::{hint::black_box, sync::Arc};

use criterion::{criterion_group, criterion_main, Criterion};
use proxy_lb::{
    hash_policy::HashPolicyConfig,
    ring_hash::{RingHash, RingHashConfig},
    StaticBackend,
};

fn ring(c: &mut Criterion) {
    let backends: Arc<[StaticBackend]> = (0..1000)
        .map(|i| StaticBackend::new(format!("10.0.{}.{}:80", i / 256, i % 256), 1))
        .collect();
    let cfg = RingHashConfig {
        hash_policy: vec![HashPolicyConfig::header(http::HeaderName::from_static(
            "x-user",
        ))],
        min_ring_size: 1024,
        max_ring_size: 8 * 1024 * 1024,
    };
    let ring = RingHash::new(&cfg).expect("valid config");
    ring.prepare(&backends);
    let mut key = 0u64;
    c.bench_function("ring_hash_pick_hash_1000_backends", |b| {
        b.iter(|| {
            key = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
            ring.pick_hash(black_box(&backends), key)
        })
    });
    c.bench_function("ring_hash_build_1000_backends", |b| {
        b.iter(|| {
            let r = RingHash::new(&cfg).expect("valid config");
            r.prepare(black_box(&backends));
            r
        })
    });
}

criterion_group!(benches, ring);
criterion_main!(benches);
