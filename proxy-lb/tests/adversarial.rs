//! Adversarial configs and requests: weights near `u32::MAX`, 10,000 endpoints, table
//! and ring sizes at their limits, empty and all-unhealthy sets, huge and non-UTF-8
//! headers, cookies and query strings. Every balancer answers (an index in range, of a
//! healthy backend) or `None`; nothing panics.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use http::request::Parts;
use proxy_lb::{
    hash_policy::{HashPolicy, HashPolicyConfig},
    least_request::LeastRequest,
    maglev::{Maglev, MaglevConfig, MAX_TABLE_SIZE},
    random::Random,
    ring_hash::{RingHash, RingHashConfig},
    round_robin::RoundRobin,
    zone::{cookie_value, query_value, uid_shard},
    Backend, StaticBackend,
};

fn all_sources() -> Vec<HashPolicyConfig> {
    vec![
        HashPolicyConfig::header(http::HeaderName::from_static("x-key")),
        HashPolicyConfig::cookie("sid"),
        HashPolicyConfig::query_parameter("uid"),
        HashPolicyConfig::Rpc {
            include_method: true,
        },
        HashPolicyConfig::SourceIp,
    ]
}

fn maglev(size: u64) -> Maglev {
    Maglev::new(&MaglevConfig {
        hash_policy: all_sources(),
        table_size: size,
    })
    .unwrap()
}

fn ring(min: u64, max: u64) -> RingHash {
    RingHash::new(&RingHashConfig {
        hash_policy: all_sources(),
        min_ring_size: min,
        max_ring_size: max,
    })
    .unwrap()
}

/// Requests with and without keys, hostile ones included.
fn requests() -> Vec<Parts> {
    let huge_cookie: String = (0..5_000)
        .map(|i| format!("c{i}=v{i}; "))
        .collect::<String>()
        + "sid=last";
    let huge_query: String = (0..5_000).map(|i| format!("p{i}=&")).collect::<String>() + "uid=7";
    let mut out = vec![
        http::Request::builder().body(()).unwrap(),
        http::Request::builder()
            .header("x-key", "ann")
            .body(())
            .unwrap(),
        http::Request::builder()
            .header("cookie", huge_cookie)
            .body(())
            .unwrap(),
        http::Request::builder()
            .uri(format!("/?{huge_query}"))
            .body(())
            .unwrap(),
        http::Request::builder()
            .header(
                "x-key",
                http::HeaderValue::from_bytes(&[0xff, 0xfe, 0x80, b'a']).unwrap(),
            )
            .header(
                "cookie",
                http::HeaderValue::from_bytes(b"sid=\xff\xfe; =; ;;=x; sid").unwrap(),
            )
            .body(())
            .unwrap(),
        http::Request::builder()
            .header("x-key", "k".repeat(1 << 20))
            .body(())
            .unwrap(),
        http::Request::builder()
            .uri("/a.B/c")
            .header("content-type", "application/grpc")
            .body(())
            .unwrap(),
    ];
    let mut many = http::Request::builder();
    for i in 0..2_000 {
        many = many.header("cookie", format!("k{i}=\"{i}\""));
    }
    out.push(many.body(()).unwrap());
    out.into_iter().map(|r| r.into_parts().0).collect()
}

fn backends(n: usize, weight: impl Fn(usize) -> u32) -> Arc<[StaticBackend]> {
    (0..n)
        .map(|i| {
            StaticBackend::new(
                format!("10.{}.{}.{}:80", i >> 16, (i >> 8) & 255, i & 255),
                weight(i),
            )
        })
        .collect()
}

/// Every balancer over `set`: picks are in range and healthy, or `None` only when no
/// backend is usable.
fn check_all(set: &Arc<[StaticBackend]>, maglev_size: u64) {
    let reqs = requests();
    let ok = |pick: Option<usize>| {
        if let Some(i) = pick {
            assert!(i < set.len(), "index {i} of {}", set.len());
            assert!(set[i].is_healthy(), "picked an unhealthy backend");
        }
        pick.is_some()
    };
    let usable = set.iter().any(|b| b.is_healthy() && b.weight() > 0);
    let m = maglev(maglev_size);
    m.prepare(set);
    let r = ring(1024, 1 << 20);
    r.prepare(set);
    let rr = RoundRobin::default();
    rr.prepare(set);
    let random = Random::default();
    random.prepare(set);
    let lr = LeastRequest::default();
    for req in &reqs {
        for _ in 0..5 {
            let picked = [
                ok(m.pick_from(set, req)),
                ok(r.pick_from(set, req)),
                ok(rr.pick_from(set)),
                ok(random.pick_from(set)),
                ok(lr.pick_from(set)),
            ];
            if usable {
                assert_eq!(picked, [true; 5], "a usable set got no pick");
            }
        }
    }
}

#[test]
fn weights_near_u32_max_over_10_000_endpoints() {
    let set = backends(10_000, |i| match i % 3 {
        0 => u32::MAX,
        1 => u32::MAX - 1,
        _ => 1,
    });
    check_all(&set, 65_537);
    // Half of them unhealthy, the heavy ones first.
    for b in set.iter().step_by(2) {
        b.set_healthy(false);
    }
    check_all(&set, 65_537);
}

#[test]
fn empty_unhealthy_and_weightless_sets() {
    check_all(&backends(0, |_| 1), 65_537);
    let down = backends(50, |_| u32::MAX);
    for b in down.iter() {
        b.set_healthy(false);
    }
    check_all(&down, 65_537);
    // Weight 0 everywhere: weighted policies have nothing to weigh.
    check_all(&backends(50, |_| 0), 65_537);
    // One backend, one healthy among many.
    check_all(&backends(1, |_| u32::MAX), 2);
    let one_left = backends(1_000, |_| 1);
    for b in one_left.iter().skip(1) {
        b.set_healthy(false);
    }
    check_all(&one_left, 65_537);
}

#[test]
fn tables_and_rings_at_their_limits() {
    // The smallest table (2, a prime) and the largest, over 10,000 endpoints.
    let set = backends(10_000, |i| (i % 7 + 1) as u32);
    check_all(&set, 2);
    // The largest table size is accepted (building it is left to the benches: a
    // debug build of 5,000,011 slots takes seconds).
    assert!(Maglev::new(&MaglevConfig {
        hash_policy: all_sources(),
        table_size: MAX_TABLE_SIZE,
    })
    .is_ok());
    // Rings of one point and of the smallest bound over many endpoints: every
    // endpoint keeps at least one point.
    for (min, max) in [(1, 1), (1, 3), (10_000, 10_000)] {
        let r = ring(min, max);
        r.prepare(&set);
        let len = r.table().map(|r| r.len()).unwrap_or(0);
        assert!(len >= set.len(), "{len} points");
        for req in requests() {
            assert!(r.pick_from(&set, &req).is_some_and(|i| i < set.len()));
        }
    }
    // Out-of-range sizes are refused naming the field.
    let e = RingHash::new(&RingHashConfig {
        hash_policy: all_sources(),
        min_ring_size: 1,
        max_ring_size: u64::MAX,
    })
    .err()
    .unwrap();
    assert_eq!(e.field(), "max_ring_size");
    let e = Maglev::new(&MaglevConfig {
        hash_policy: all_sources(),
        table_size: u64::MAX,
    })
    .err()
    .unwrap();
    assert_eq!(e.field(), "table_size");
}

#[test]
fn hash_keys_from_hostile_requests_are_stable() {
    let policy = HashPolicy::try_new(&all_sources(), "hash_policy").unwrap();
    for req in requests() {
        assert_eq!(policy.hash(&req), policy.hash(&req));
    }
    let reqs = requests();
    // The last of 5,000 cookies and the last of 5,000 parameters are found.
    assert!(policy.hash(&reqs[2]).is_some());
    assert!(policy.hash(&reqs[3]).is_some());
}

#[test]
fn zone_inputs_from_hostile_requests() {
    let mut headers = http::HeaderMap::new();
    headers.append(
        "cookie",
        http::HeaderValue::from_bytes(b"zone=\xff\xfe").unwrap(),
    );
    headers.append("cookie", http::HeaderValue::from_static("a; =; zone"));
    assert_eq!(cookie_value(&headers, "zone"), None);
    let long: String = "9".repeat(1 << 20);
    assert!(uid_shard(&long, u32::MAX).is_some_and(|s| s < u32::MAX));
    assert!(uid_shard(&"\u{10FFFF}".repeat(1000), 1).is_some_and(|s| s == 0));
    assert_eq!(uid_shard("", 100), None);
    assert_eq!(query_value(Some("&&=&uid&uid=3"), "uid"), Some(""));
}
