//! Maglev: table build and lookup for 1,000 backends (M = 65537).

// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use std::{hint::black_box, sync::Arc};

use criterion::{criterion_group, criterion_main, Criterion};
use proxy_lb::{
    hash_policy::HashPolicyConfig,
    maglev::{Maglev, MaglevConfig, MaglevTable},
    StaticBackend,
};

fn ids(n: usize) -> Vec<(String, u32)> {
    (0..n)
        .map(|i| {
            (
                format!("10.{}.{}.{}:8080", i >> 16 & 255, i >> 8 & 255, i & 255),
                1,
            )
        })
        .collect()
}

fn build(c: &mut Criterion) {
    let backends = ids(1000);
    c.bench_function("maglev_build_1000_backends_65537", |b| {
        b.iter(|| MaglevTable::build(black_box(&backends), 65537))
    });
    let weighted: Vec<(String, u32)> = ids(1000)
        .into_iter()
        .enumerate()
        .map(|(i, (id, _))| (id, 1 + (i % 10) as u32))
        .collect();
    c.bench_function("maglev_build_1000_weighted_backends_65537", |b| {
        b.iter(|| MaglevTable::build(black_box(&weighted), 65537))
    });
}

fn lookup(c: &mut Criterion) {
    let maglev = Maglev::new(&MaglevConfig {
        hash_policy: vec![HashPolicyConfig::header(http::HeaderName::from_static(
            "x-user",
        ))],
        table_size: 65537,
    })
    .expect("valid config");
    let backends: Arc<[StaticBackend]> = ids(1000)
        .into_iter()
        .map(|(id, w)| StaticBackend::new(id, w))
        .collect();
    maglev.prepare(&backends);
    let mut key = 0u64;
    c.bench_function("maglev_pick_hash_1000_backends", |b| {
        b.iter(|| {
            key = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
            maglev.pick_hash(black_box(&backends), key)
        })
    });
    let (req, _) = http::Request::builder()
        .header("x-user", "user-12345")
        .body(())
        .expect("valid request")
        .into_parts();
    c.bench_function("maglev_pick_header_key_1000_backends", |b| {
        b.iter(|| maglev.pick_from(black_box(&backends), black_box(&req)))
    });
}

criterion_group!(benches, build, lookup);
criterion_main!(benches);
