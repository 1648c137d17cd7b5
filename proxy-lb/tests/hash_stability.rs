//! Hashing is stable across releases: a fixed table of key -> endpoint for Maglev and
//! ring hash, checked in under `tests/fixtures/`, must keep coming out the same. A
//! change here moves users between endpoints on upgrade: only on purpose, with a
//! release note, by regenerating the fixture (`PROXY_LB_BLESS=1 cargo test -p
//! proxy-lb --test integration hash_stability::`).

#![allow(clippy::unwrap_used)]

use std::{fmt::Write as _, sync::Arc};

use proxy_lb::{
    hash_policy::HashPolicyConfig,
    maglev::{Maglev, MaglevConfig},
    ring_hash::{RingHash, RingHashConfig},
    StaticBackend,
};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/hash_stability.txt"
);
const WEIGHTS: [u32; 10] = [1, 1, 2, 1, 3, 1, 1, 2, 1, 1];

fn policy() -> Vec<HashPolicyConfig> {
    vec![
        HashPolicyConfig::header(http::HeaderName::from_static("x-user")),
        HashPolicyConfig::cookie("uid"),
    ]
}

fn table() -> String {
    let backends: Arc<[StaticBackend]> = WEIGHTS
        .iter()
        .enumerate()
        .map(|(i, &w)| StaticBackend::new(format!("10.0.0.{}:8080", i + 1), w))
        .collect();
    let maglev = Maglev::new(&MaglevConfig {
        hash_policy: policy(),
        table_size: 65537,
    })
    .unwrap();
    let ring = RingHash::new(&RingHashConfig {
        hash_policy: policy(),
        min_ring_size: 1024,
        max_ring_size: 8 * 1024 * 1024,
    })
    .unwrap();
    maglev.prepare(&backends);
    ring.prepare(&backends);
    let mut out = String::from("# key  maglev(M=65537)  ring_hash(min 1024)\n");
    for k in 0..200 {
        let key = format!("user-{k}");
        // Half the keys come in a header, half in a cookie: the same key hash.
        let req = if k % 2 == 0 {
            http::Request::builder().header("x-user", &key)
        } else {
            http::Request::builder().header("cookie", format!("a=b; uid={key}"))
        };
        let (parts, _) = req.body(()).unwrap().into_parts();
        let m = maglev.pick_from(&backends, &parts).unwrap();
        let r = ring.pick_from(&backends, &parts).unwrap();
        writeln!(out, "{key} {} {}", backends[m].id(), backends[r].id()).unwrap();
    }
    out
}

#[test]
fn key_to_endpoint_table_is_unchanged() {
    let now = table();
    if std::env::var_os("PROXY_LB_BLESS").is_some() {
        std::fs::write(FIXTURE, &now).unwrap();
    }
    let fixed = std::fs::read_to_string(FIXTURE).unwrap();
    for (line, (want, got)) in fixed.lines().zip(now.lines()).enumerate() {
        assert_eq!(got, want, "line {} of {FIXTURE}", line + 1);
    }
    assert_eq!(fixed.lines().count(), now.lines().count());
}
