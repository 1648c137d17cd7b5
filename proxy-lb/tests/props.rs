//! Invariants of the balancers, checked with proptest on plain backends (no proxy):
//! exact round-robin proportions per cycle, never an unhealthy pick while a healthy
//! endpoint exists, Maglev balance, disruption and weights, ring hash stability.

#![allow(clippy::unwrap_used)]

use std::{collections::HashMap, sync::Arc};

use proptest::prelude::*;
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
    vec![HashPolicyConfig::Header {
        name: "x-key".into(),
    }]
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

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
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Unweighted, M = 65537: every backend owns floor(M/N) or ceil(M/N) slots.
    #[test]
    fn maglev_unweighted_balance(n in 1usize..=1000, salt in any::<u32>()) {
        let t = MaglevTable::build(&ids(n, salt), M);
        let lo = M as usize / n;
        let hi = lo + usize::from(M as usize % n != 0);
        for (i, c) in counts(&t, n).into_iter().enumerate() {
            prop_assert!(c == lo || c == hi, "backend {} owns {} slots, want {} or {}", i, c, lo, hi);
        }
    }

    /// Removing one of 100 backends changes at most 2% of the slots (its own ~1%
    /// included).
    #[test]
    fn maglev_disruption_100(salt in any::<u32>(), removed in 0usize..100) {
        let d = disruption(&ids(100, salt), removed);
        prop_assert!(d <= 0.02, "{:.4}% of slots changed", d * 100.0);
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
