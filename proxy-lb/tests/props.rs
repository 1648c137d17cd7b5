//! Invariants of the balancers, checked with proptest on plain backends (no proxy):
//! exact round-robin proportions per cycle, never an unhealthy pick while a healthy
//! endpoint exists, Maglev balance, disruption and weights, ring hash stability.

#![allow(clippy::unwrap_used)]

use std::{collections::HashMap, sync::Arc};

use proptest::prelude::*;
use proxy_core::{
    cluster::HealthFlags,
    config::{from_yaml, to_yaml, Section, TypedConfig},
    Balancer, Endpoint,
};
use proxy_lb::{
    hash_policy::HashPolicyConfig,
    least_request::{LeastRequest, LeastRequestConfig},
    maglev::{Maglev, MaglevConfig, MaglevTable},
    random::Random,
    ring_hash::{Ring, RingHash, RingHashConfig},
    round_robin::{RoundRobin, Schedule},
    Backend, StaticBackend,
};

const M: u32 = 65537;

fn id(i: usize, salt: u32) -> String {
    format!(
        "10.{}.{}.{}:{}",
        (salt % 200) + 1,
        i / 256,
        i % 256,
        8000 + salt % 1000
    )
}

fn ids(n: usize, salt: u32) -> Vec<(String, u32)> {
    (0..n).map(|i| (id(i, salt), 1)).collect()
}

fn key_request(key: &str) -> http::request::Parts {
    http::Request::builder()
        .header("x-key", key)
        .body(())
        .unwrap()
        .into_parts()
        .0
}

fn header_policy() -> Vec<HashPolicyConfig> {
    vec![HashPolicyConfig::header(http::HeaderName::from_static(
        "x-key",
    ))]
}

/// `cases` cases; failing seeds kept in `proptest-regressions/props.txt` (proptest
/// cannot find a source file of its own for an integration test).
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct("proptest-regressions/props.txt"),
        )),
        ..ProptestConfig::default()
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// Over every cycle (sum of weights / gcd picks), each endpoint is picked exactly
    /// weight / gcd times, whatever the start of the counter.
    #[test]
    fn round_robin_exact_proportions_per_cycle(
        weights in prop::collection::vec(1u32..=20, 1..=12),
        cycles in 1usize..=4,
    ) {
        let g = weights.iter().copied().fold(0, gcd);
        let cycle: usize = weights.iter().map(|&w| (w / g) as usize).sum();
        prop_assert_eq!(Schedule::build(&weights).order().len(), cycle);
        let backends: Arc<[StaticBackend]> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| StaticBackend::new(id(i, 1), w))
            .collect();
        let rr = RoundRobin::default();
        rr.prepare(&backends);
        for _ in 0..cycles {
            let mut counts = vec![0u32; weights.len()];
            for _ in 0..cycle {
                counts[rr.pick_from(&backends).unwrap()] += 1;
            }
            let want: Vec<u32> = weights.iter().map(|&w| w / g).collect();
            prop_assert_eq!(counts, want);
        }
    }

    /// No balancer picks an unhealthy endpoint while a healthy one exists, and none
    /// picks anything when none is healthy.
    #[test]
    fn never_picks_unhealthy(
        spec in prop::collection::vec((1u32..=10, any::<bool>()), 1..=40),
        keys in prop::collection::vec("[a-z0-9]{1,12}", 1..=20),
    ) {
        let backends: Arc<[StaticBackend]> = spec
            .iter()
            .enumerate()
            .map(|(i, &(w, healthy))| {
                let b = StaticBackend::new(id(i, 2), w);
                b.set_healthy(healthy);
                b.set_active(i as u64 % 5);
                b
            })
            .collect();
        let any_healthy = spec.iter().any(|s| s.1);
        let maglev = Maglev::new(&MaglevConfig { hash_policy: header_policy(), table_size: 1009 }).unwrap();
        let ring = RingHash::new(&RingHashConfig {
            hash_policy: header_policy(),
            min_ring_size: 256,
            max_ring_size: 4096,
        }).unwrap();
        let rr = RoundRobin::default();
        maglev.prepare(&backends);
        ring.prepare(&backends);
        rr.prepare(&backends);
        let lr = LeastRequest::new(&LeastRequestConfig { choice_count: 2 }).unwrap();
        let random = Random::default();
        random.prepare(&backends);
        let unkeyed = http::Request::builder().body(()).unwrap().into_parts().0;
        let check = |name: &str, pick: Option<usize>| -> Result<(), TestCaseError> {
            match pick {
                Some(i) => prop_assert!(backends[i].is_healthy(), "{} picked unhealthy {}", name, i),
                None => prop_assert!(!any_healthy, "{} picked nothing with a healthy endpoint", name),
            }
            Ok(())
        };
        for key in &keys {
            let req = key_request(key);
            check("maglev", maglev.pick_from(&backends, &req))?;
            check("ring_hash", ring.pick_from(&backends, &req))?;
            check("round_robin", rr.pick_from(&backends))?;
            check("least_request", lr.pick_from(&backends))?;
            check("random", random.pick_from(&backends))?;
        }
        check("maglev without key", maglev.pick_from(&backends, &unkeyed))?;
        check("ring_hash without key", ring.pick_from(&backends, &unkeyed))?;
        // A slice the tables were not built for (an older endpoint set) falls back.
        let other: Vec<&StaticBackend> = backends.iter().collect();
        let req = key_request(&keys[0]);
        check("maglev on another slice", maglev.pick_from(&other, &req))?;
        check("ring_hash on another slice", ring.pick_from(&other, &req))?;
        check("round_robin on another slice", rr.pick_from(&other))?;
        check("random on another slice", random.pick_from(&other))?;
    }
}

fn counts(t: &MaglevTable, n: usize) -> Vec<usize> {
    let mut c = vec![0; n];
    for &e in t.entries() {
        c[e as usize] += 1;
    }
    c
}

/// Share of slots (in the table for `all`) whose backend differs once `removed` left.
fn disruption(all: &[(String, u32)], removed: usize) -> f64 {
    let full = MaglevTable::build(all, M);
    let mut rest = all.to_vec();
    rest.remove(removed);
    let less = MaglevTable::build(&rest, M);
    let changed = full
        .entries()
        .iter()
        .zip(less.entries())
        .filter(|(a, b)| all[**a as usize].0 != rest[**b as usize].0)
        .count();
    changed as f64 / f64::from(M)
}

proptest! {
    #![proptest_config(config(32))]

    /// Unweighted, M = 65537: every backend owns floor(M/N) or ceil(M/N) slots.
    #[test]
    fn maglev_unweighted_balance(n in 1usize..=1000, salt in any::<u32>()) {
        let t = MaglevTable::build(&ids(n, salt), M);
        let lo = M as usize / n;
        let hi = lo + usize::from(!(M as usize).is_multiple_of(n));
        for (i, c) in counts(&t, n).into_iter().enumerate() {
            prop_assert!(c == lo || c == hi, "backend {} owns {} slots, want {} or {}", i, c, lo, hi);
        }
    }

    /// Removing one of 100 backends changes at most 2.5% of the slots (its own ~1%
    /// included). Maglev is not minimally disruptive: over 3,000 salts the worst
    /// case changed 2.21% and 3 cases passed 2% (a 2% bound failed CI about once in
    /// 30 runs of 32 cases).
    #[test]
    fn maglev_disruption_100(salt in any::<u32>(), removed in 0usize..100) {
        let d = disruption(&ids(100, salt), removed);
        prop_assert!(d <= 0.025, "{:.4}% of slots changed", d * 100.0);
    }

    /// Removing one of 1,000 backends changes at most 1% of the slots.
    #[test]
    fn maglev_disruption_1000(salt in any::<u32>(), removed in 0usize..1000) {
        let d = disruption(&ids(1000, salt), removed);
        prop_assert!(d <= 0.01, "{:.4}% of slots changed", d * 100.0);
    }

    /// Weighted shares follow the weights within 1% (relative).
    #[test]
    fn maglev_weighted_shares(weights in prop::collection::vec(1u32..=10, 2..=20), salt in any::<u32>()) {
        let backends: Vec<(String, u32)> = weights.iter().enumerate().map(|(i, &w)| (id(i, salt), w)).collect();
        let t = MaglevTable::build(&backends, M);
        let total: u32 = weights.iter().sum();
        for (i, c) in counts(&t, weights.len()).into_iter().enumerate() {
            let want = f64::from(M) * f64::from(weights[i]) / f64::from(total);
            prop_assert!((c as f64 - want).abs() <= want * 0.01, "backend {} weight {} owns {}, want {:.1}", i, weights[i], c, want);
        }
    }

    /// Ring hash: removing a node moves only the keys that node owned, at a fixed
    /// scale and through a balancer whose endpoint set shrinks.
    #[test]
    fn ring_hash_moves_only_removed_keys(
        weights in prop::collection::vec(1u32..=5, 3..=30),
        removed_pick in any::<prop::sample::Index>(),
        salt in any::<u32>(),
    ) {
        let n = weights.len();
        let removed = removed_pick.index(n);
        let all: Vec<(String, u32)> = weights.iter().enumerate().map(|(i, &w)| (id(i, salt), w)).collect();
        let mut rest = all.clone();
        rest.remove(removed);
        let (a, b) = (Ring::with_scale(&all, 40), Ring::with_scale(&rest, 40));
        let keys: Vec<u64> = (0..2000u64).map(|k| k.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
        for &k in &keys {
            let before = &all[a.lookup(k).unwrap()].0;
            let after = &rest[b.lookup(k).unwrap()].0;
            if before != &all[removed].0 {
                prop_assert_eq!(before, after);
            }
        }

        // The balancer keeps its scale when an endpoint leaves (equal weights).
        let bal = RingHash::new(&RingHashConfig { hash_policy: header_policy(), min_ring_size: 1024, max_ring_size: 1 << 20 }).unwrap();
        let mk = |v: &[(String, u32)]| -> Arc<[StaticBackend]> { v.iter().map(|(id, _)| StaticBackend::new(id.clone(), 1)).collect() };
        let (full, less) = (mk(&all), mk(&rest));
        bal.prepare(&full);
        let owners: HashMap<u64, String> = keys.iter().map(|&k| (k, all[bal.pick_hash(&full, k).unwrap()].0.clone())).collect();
        bal.prepare(&less);
        for &k in &keys {
            let after = &rest[bal.pick_hash(&less, k).unwrap()].0;
            if owners[&k] != all[removed].0 {
                prop_assert_eq!(&owners[&k], after);
            }
        }
    }
}

/// A proxy endpoint at `10.0.<i>:80`.
fn endpoint(i: usize, weight: u32) -> Arc<Endpoint> {
    let addr = format!("10.0.{}.{}:80", i / 256, i % 256).parse().unwrap();
    Arc::new(Endpoint::new(
        addr,
        weight.try_into().unwrap(),
        Default::default(),
    ))
}

const FLAGS: [HealthFlags; 4] = [
    HealthFlags::NONE,
    HealthFlags::ACTIVE_HC_FAILED,
    HealthFlags::EJECTED,
    HealthFlags::REMOVED,
];

proptest! {
    #![proptest_config(config(48))]

    /// The registered balancers, through `proxy_core::Balancer` over real endpoints:
    /// an endpoint with any health flag (check failed, ejected, removed) is never
    /// picked while one without exists, also when flags change after the tables were
    /// built.
    #[test]
    fn registered_balancers_skip_flagged_endpoints(
        spec in prop::collection::vec((1u32..=8, 0usize..4), 1..=30),
        later in prop::collection::vec((any::<prop::sample::Index>(), 0usize..4), 0..=5),
        keys in prop::collection::vec("[a-z0-9]{1,8}", 1..=12),
    ) {
        let endpoints: Arc<[Arc<Endpoint>]> = spec
            .iter()
            .enumerate()
            .map(|(i, &(w, f))| {
                let e = endpoint(i, w);
                e.set_health_flag(FLAGS[f]);
                e
            })
            .collect();
        let mut registry = proxy_core::Registry::default();
        proxy_lb::register(&mut registry);
        let sections = [
            ("random", "null"),
            ("round_robin", "null"),
            ("least_request", "choice_count: 3"),
            ("ring_hash", "{hash_policy: [{header: {name: x-key}}], min_ring_size: 64}"),
            ("maglev", "{hash_policy: [{header: {name: x-key}}], table_size: 251}"),
        ];
        let balancers: Vec<(&str, Arc<dyn Balancer>)> = sections
            .iter()
            .map(|(name, cfg)| {
                let cfg: Section = proxy_core::config::from_yaml(cfg).unwrap();
                (*name, build(&registry, name, cfg))
            })
            .collect();
        for (_, b) in &balancers {
            b.endpoints_changed(&endpoints);
        }
        for (k, &(i, f)) in later.iter().enumerate() {
            let e = &endpoints[i.index(endpoints.len())];
            if k % 2 == 0 {
                e.set_health_flag(FLAGS[f]);
            } else {
                e.clear_health_flag(FLAGS[f] | HealthFlags::EJECTED);
            }
        }
        let any_healthy = endpoints.iter().any(|e| e.is_healthy());
        for key in &keys {
            let req = key_request(key);
            for (name, b) in &balancers {
                match b.pick(&endpoints, &req) {
                    Some(i) => prop_assert!(endpoints[i].is_healthy(), "{} picked {:?}", name, endpoints[i].health_flags()),
                    None => prop_assert!(!any_healthy, "{} picked nothing", name),
                }
            }
        }
    }
}

/// A balancer from the registry, as the proxy builds it.
fn build(registry: &proxy_core::Registry, policy: &str, section: Section) -> Arc<dyn Balancer> {
    let mut config: proxy_core::config::Config = proxy_core::config::from_yaml(
        "listeners: [{name: l, address: 127.0.0.1:0, virtual_hosts: []}]
clusters: [{name: c, endpoints: [127.0.0.1:1]}]",
    )
    .unwrap();
    config.clusters[0].lb = TypedConfig {
        typed: policy.to_owned(),
        config: section,
    };
    let snapshot = proxy_core::snapshot::Snapshot::build(config, registry, None).unwrap();
    snapshot.clusters.get("c").unwrap().balancer.clone()
}

fn hash_policy_strategy() -> impl Strategy<Value = HashPolicyConfig> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,12}".prop_map(|name| HashPolicyConfig::header(name.parse().unwrap())),
        "[a-z][a-z0-9_]{0,12}".prop_map(HashPolicyConfig::cookie),
        "[a-z][a-z0-9_]{0,12}".prop_map(HashPolicyConfig::query_parameter),
        Just(HashPolicyConfig::SourceIp),
        any::<bool>().prop_map(|include_method| HashPolicyConfig::Rpc { include_method }),
    ]
}

proptest! {
    #![proptest_config(config(64))]

    /// Configs survive YAML both ways, and valid ones build.
    #[test]
    fn configs_round_trip(
        policy in prop::collection::vec(hash_policy_strategy(), 1..=4),
        min in 1u64..=4096,
        extra in 0u64..=4096,
        choice_count in 2u32..=16,
    ) {
        let ring = RingHashConfig { hash_policy: policy.clone(), min_ring_size: min, max_ring_size: min + extra };
        let yaml = to_yaml(&ring).unwrap();
        let back: RingHashConfig = from_yaml(&yaml).unwrap();
        prop_assert_eq!(&back, &ring);
        prop_assert!(RingHash::new(&back).is_ok());

        let maglev = MaglevConfig { hash_policy: policy, table_size: 65537 };
        let yaml = to_yaml(&maglev).unwrap();
        let back: MaglevConfig = from_yaml(&yaml).unwrap();
        prop_assert_eq!(&back, &maglev);
        prop_assert!(Maglev::new(&back).is_ok());

        let lr = LeastRequestConfig { choice_count };
        let back: LeastRequestConfig = from_yaml(&to_yaml(&lr).unwrap()).unwrap();
        prop_assert_eq!(&back, &lr);
        prop_assert!(LeastRequest::new(&back).is_ok());
    }
}
