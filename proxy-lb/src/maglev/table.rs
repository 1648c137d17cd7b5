//! The Maglev lookup table (Eisenbud et al., "Maglev: A Fast and Reliable Software
//! Network Load Balancer", NSDI 2016, section 3.4).
//!
//! Each backend has a preference list over the `M` slots (`M` prime), a permutation
//! given by `offset = h1(id) mod M` and `skip = h2(id) mod (M - 1) + 1`: its j-th
//! choice is `(offset + j * skip) mod M`. Backends take turns claiming their next
//! preferred free slot until the table is full. For weights, a backend takes a turn
//! in a round only when its accumulated credit (its weight added each round) reaches
//! the largest weight, so turns, and so slots, follow the weights.

use std::{cmp::Reverse, collections::BinaryHeap, fmt};

use xxhash_rust::xxh64::xxh64;

/// Seeds of the two permutation hashes. Part of the on-wire contract: changing them
/// moves every key.
const OFFSET_SEED: u64 = 0x6d61_676c_6576_6f66; // "maglevof"
const SKIP_SEED: u64 = 0x6d61_676c_6576_736b; // "maglevsk"

/// How many neighbouring slots a lookup walks past unhealthy backends.
const MAX_WALK: usize = 128;

const EMPTY: u32 = u32::MAX;

/// A built Maglev table: slot -> backend index.
#[derive(Clone, PartialEq, Eq)]
pub struct MaglevTable {
    entries: Box<[u32]>,
}

impl fmt::Debug for MaglevTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaglevTable")
            .field("size", &self.entries.len())
            .finish()
    }
}

impl MaglevTable {
    /// Builds the table of `size` slots (a prime; see [`is_prime`]) for backends
    /// given as (hash id, weight). Backends of weight 0 get no slot; with no backend
    /// of positive weight the table is empty.
    ///
    /// Cost: O(M log M) expected slot probes, O(M + N) memory.
    pub fn build<I: AsRef<[u8]>>(backends: &[(I, u32)], size: u32) -> Self {
        let m = u64::from(size);
        let n = backends.len();
        let wmax = backends.iter().map(|b| u64::from(b.1)).max().unwrap_or(0);
        if m == 0 || n == 0 || wmax == 0 || n >= EMPTY as usize {
            return Self {
                entries: Box::new([]),
            };
        }
        let mut pos = Vec::with_capacity(n);
        let mut skip = Vec::with_capacity(n);
        for (id, _) in backends {
            let id = id.as_ref();
            pos.push(xxh64(id, OFFSET_SEED) % m);
            skip.push(if m > 1 {
                xxh64(id, SKIP_SEED) % (m - 1) + 1
            } else {
                1
            });
        }
        let weights: Vec<u64> = backends.iter().map(|b| u64::from(b.1)).collect();
        let mut entries = vec![EMPTY; size as usize];
        // Claims the next preferred free slot of backend `i`. `skip` is coprime with
        // the prime `m`, so the walk visits every slot and finds a free one.
        let mut claim = |i: usize| loop {
            let c = pos[i] as usize;
            pos[i] += skip[i];
            if pos[i] >= m {
                pos[i] -= m;
            }
            if entries[c] == EMPTY {
                entries[c] = i as u32;
                return;
            }
        };
        let mut filled = 0u64;
        if weights.iter().all(|&w| w == wmax) {
            // Unweighted: every backend takes a turn each round, in index order.
            'rounds: loop {
                for i in 0..n {
                    claim(i);
                    filled += 1;
                    if filled == m {
                        break 'rounds;
                    }
                }
            }
        } else {
            // Weighted: backend i gains its weight in credit each round and takes a
            // turn when the credit reaches the largest weight, so its k-th turn is in
            // round ceil(k * wmax / w). Turns are taken in (round, index) order from
            // a heap, so rounds where a light backend sits out cost nothing.
            let turn_round = |k: u64, w: u64| (k * wmax).div_ceil(w);
            let mut turns: Vec<u64> = vec![0; n];
            let mut heap: BinaryHeap<Reverse<(u64, usize)>> = weights
                .iter()
                .enumerate()
                .filter(|(_, &w)| w > 0)
                .map(|(i, &w)| Reverse((turn_round(1, w), i)))
                .collect();
            while let Some(Reverse((_, i))) = heap.pop() {
                claim(i);
                filled += 1;
                if filled == m {
                    break;
                }
                turns[i] += 1;
                heap.push(Reverse((turn_round(turns[i] + 1, weights[i]), i)));
            }
        }
        Self {
            entries: entries.into(),
        }
    }

    /// Number of slots (0 for an empty table).
    pub fn size(&self) -> usize {
        self.entries.len()
    }

    /// Slot -> backend index.
    pub fn entries(&self) -> &[u32] {
        &self.entries
    }

    /// The backend owning `hash`.
    pub fn lookup(&self, hash: u64) -> Option<usize> {
        if self.entries.is_empty() {
            return None;
        }
        let slot = (hash % self.entries.len() as u64) as usize;
        Some(self.entries[slot] as usize)
    }

    /// The backend owning `hash` if `usable`, else the backend of the next slot that
    /// is, walking at most a bounded number of slots; `None` past that.
    pub fn lookup_usable(&self, hash: u64, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.entries.len();
        if len == 0 {
            return None;
        }
        let start = (hash % len as u64) as usize;
        (0..len.min(MAX_WALK))
            .map(|k| self.entries[(start + k) % len] as usize)
            .find(|&i| usable(i))
    }
}

/// Whether `n` is prime (trial division: table sizes are small).
pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let mut d = 3;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(t: &MaglevTable, n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &e in t.entries() {
            c[e as usize] += 1;
        }
        c
    }

    #[test]
    fn primes() {
        assert!(is_prime(65537));
        assert!(is_prime(2));
        assert!(!is_prime(65536));
        assert!(!is_prime(1));
        assert!(!is_prime(65535));
    }

    #[test]
    fn unweighted_is_balanced() {
        let b: Vec<(String, u32)> = (0..7).map(|i| (format!("b{i}"), 1)).collect();
        let t = MaglevTable::build(&b, 65537);
        for c in counts(&t, 7) {
            assert!(c == 65537 / 7 || c == 65537 / 7 + 1, "{c}");
        }
    }

    #[test]
    fn weighted_follows_weights() {
        let b = [("a", 1), ("b", 2), ("c", 7)];
        let t = MaglevTable::build(&b, 65537);
        let c = counts(&t, 3);
        for (i, w) in [1.0, 2.0, 7.0].iter().enumerate() {
            let share = c[i] as f64 / 65537.0;
            assert!((share - w / 10.0).abs() < 0.001, "{c:?}");
        }
    }

    #[test]
    fn extreme_weight_ratios_build_fast() {
        let mut b: Vec<(String, u32)> = (0..1000).map(|i| (format!("b{i}"), 1)).collect();
        b[0].1 = u32::MAX;
        let t = MaglevTable::build(&b, 65537);
        assert_eq!(counts(&t, 1000)[0], 65537);
        b[0].1 = 2;
        let t = MaglevTable::build(&b, 65537);
        let c = counts(&t, 1000);
        assert!((128..=132).contains(&c[0]), "{}", c[0]);
    }

    #[test]
    fn degenerate_inputs() {
        assert_eq!(MaglevTable::build::<&str>(&[], 7).lookup(1), None);
        assert_eq!(MaglevTable::build(&[("a", 0)], 7).lookup(1), None);
        let t = MaglevTable::build(&[("a", 0), ("b", 3)], 7);
        assert!(t.entries().iter().all(|&e| e == 1));
        let t = MaglevTable::build(&[("a", 1); 20], 7);
        assert_eq!(t.size(), 7);
    }
}
