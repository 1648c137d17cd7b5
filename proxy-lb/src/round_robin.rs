//! Smooth weighted round robin, as nginx does it, without a lock: one cycle of the
//! schedule is computed when the endpoint set changes and published with `arc-swap`;
//! each pick takes the next slot with one atomic add.
//!
//! Over any run of `cycle length` consecutive picks (the sum of the weights divided
//! by their greatest common divisor) every endpoint is picked exactly in proportion to
//! its weight, and picks of a heavy endpoint are spread over the cycle rather than
//! bunched (weights 5, 1, 1 give `a a b a c a a`). A slot whose endpoint is unhealthy
//! is skipped, so the healthy endpoints keep their proportions among themselves.

use std::{
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use proxy_core::{Balancer, Endpoint};
use serde::{Deserialize, Serialize};

use crate::{table::TableCell, Backend};

/// Config of `round_robin` (no settings; weights come from the endpoints).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundRobinConfig {}

/// Longest cycle kept. Larger weight sums are scaled down to this (proportions then
/// hold to within one slot per endpoint in 2^18).
const MAX_CYCLE: u64 = 1 << 18;
/// Up to this many (cycle x endpoints) steps the schedule is built by nginx's own
/// algorithm; past it by an equivalent O(L log L) deadline ordering.
const MAX_NGINX_STEPS: u64 = 1 << 24;

/// One cycle of the schedule: endpoint indices in pick order.
#[derive(Clone, PartialEq, Eq)]
pub struct Schedule {
    order: Box<[u32]>,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schedule")
            .field("cycle", &self.order.len())
            .finish()
    }
}

impl Schedule {
    /// The schedule for these weights. Weight-0 backends get no slot (unless all
    /// weights are 0: then every backend gets one).
    pub fn build(weights: &[u32]) -> Self {
        let mut w: Vec<u64> = weights.iter().map(|&w| u64::from(w)).collect();
        if w.iter().all(|&w| w == 0) {
            w.iter_mut().for_each(|w| *w = 1);
        }
        reduce(&mut w);
        let total: u64 = w.iter().sum();
        if total > MAX_CYCLE {
            for x in w.iter_mut().filter(|x| **x > 0) {
                *x = ((u128::from(*x) * u128::from(MAX_CYCLE) / u128::from(total)) as u64).max(1);
            }
            reduce(&mut w);
        }
        let total: u64 = w.iter().sum();
        let order = if total.saturating_mul(w.len() as u64) <= MAX_NGINX_STEPS {
            nginx(&w, total)
        } else {
            deadlines(&w)
        };
        Self {
            order: order.into(),
        }
    }

    /// The endpoint indices of one cycle, in pick order.
    pub fn order(&self) -> &[u32] {
        &self.order
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Divides the weights by their greatest common divisor.
fn reduce(w: &mut [u64]) {
    let g = w.iter().fold(0, |g, &x| gcd(g, x));
    if g > 1 {
        w.iter_mut().for_each(|x| *x /= g);
    }
}

/// nginx's smooth weighted round robin: each step every backend gains its weight,
/// the one with the most is picked and loses the total.
fn nginx(w: &[u64], total: u64) -> Vec<u32> {
    let mut current = vec![0i64; w.len()];
    let mut order = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, c) in current.iter_mut().enumerate() {
            *c += w[i] as i64;
        }
        for i in 1..current.len() {
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total as i64;
        order.push(best as u32);
    }
    order
}

/// The j-th of a backend's w slots is due at (j + 1/2) / w of the cycle; slots in
/// order of due time (ties by index). Exact proportions, spread like nginx's.
fn deadlines(w: &[u64]) -> Vec<u32> {
    let mut slots: Vec<(u64, u64, u32)> = w
        .iter()
        .enumerate()
        .flat_map(|(i, &wi)| (0..wi).map(move |j| (2 * j + 1, 2 * wi, i as u32)))
        .collect();
    slots.sort_unstable_by(|a, b| {
        (u128::from(a.0) * u128::from(b.1))
            .cmp(&(u128::from(b.0) * u128::from(a.1)))
            .then(a.2.cmp(&b.2))
    });
    slots.into_iter().map(|s| s.2).collect()
}

/// The smooth weighted round-robin balancer.
///
/// # Example
/// ```
/// use proxy_lb::{round_robin::RoundRobin, StaticBackend};
///
/// let backends = [StaticBackend::new("a", 2), StaticBackend::new("b", 1)];
/// let rr = RoundRobin::default();
/// let mut counts = [0; 2];
/// for _ in 0..30 {
///     counts[rr.pick_from(&backends).unwrap()] += 1;
/// }
/// assert_eq!(counts, [20, 10]);
/// ```
#[derive(Debug)]
pub struct RoundRobin {
    schedule: TableCell<Schedule>,
    next: AtomicU64,
}

impl Default for RoundRobin {
    fn default() -> Self {
        Self {
            schedule: TableCell::default(),
            // A random start, so that proxies started together do not all begin with
            // the same endpoint; far from the counter's wrap.
            next: AtomicU64::new(fastrand::u64(..1 << 32)),
        }
    }
}

impl RoundRobin {
    /// A balancer from its parsed config.
    pub fn new(_config: &RoundRobinConfig) -> Self {
        Self::default()
    }

    /// Computes the schedule of a new endpoint set, off the request path.
    pub fn prepare<B: Backend + Send + Sync + 'static>(&self, backends: &Arc<[B]>) {
        self.schedule.publish(backends, build_for);
    }

    /// The next backend in the schedule, skipping unhealthy ones.
    pub fn pick_from<B: Backend>(&self, backends: &[B]) -> Option<usize> {
        let n = backends.len();
        if n == 0 {
            return None;
        }
        self.schedule
            .with(backends, build_for, |schedule| match schedule {
                Some(schedule) => {
                    let order = &schedule.order;
                    let len = order.len() as u64;
                    if len > 0 {
                        for _ in 0..n {
                            let c = self.next.fetch_add(1, Ordering::Relaxed);
                            let i = order[(c % len) as usize] as usize;
                            if backends.get(i).is_some_and(|b| b.is_healthy()) {
                                return Some(i);
                            }
                        }
                    }
                    crate::random::pick_weighted(backends)
                }
                // An older endpoint set than the schedule's: plain round robin over it.
                None => {
                    let start = self.next.fetch_add(1, Ordering::Relaxed);
                    (0..n as u64)
                        .map(|k| ((start + k) % n as u64) as usize)
                        .find(|&i| backends[i].is_healthy())
                }
            })
    }
}

fn build_for<B: Backend>(backends: &[B], _prev: Option<&Schedule>) -> Schedule {
    let weights: Vec<u32> = backends.iter().map(|b| b.weight()).collect();
    Schedule::build(&weights)
}

impl Balancer for RoundRobin {
    fn pick(&self, endpoints: &[Arc<Endpoint>], _req: &http::request::Parts) -> Option<usize> {
        self.pick_from(endpoints)
    }

    fn endpoints_changed(&self, endpoints: &Arc<[Arc<Endpoint>]>) {
        self.prepare(endpoints);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_sequence() {
        assert_eq!(Schedule::build(&[5, 1, 1]).order(), &[0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(Schedule::build(&[2, 2]).order(), &[0, 1]);
    }

    #[test]
    fn large_weights_use_deadlines_with_exact_counts() {
        let w: Vec<u32> = (1..=300).collect();
        let s = Schedule::build(&w);
        let mut counts = vec![0u32; w.len()];
        for &i in s.order() {
            counts[i as usize] += 1;
        }
        assert_eq!(counts, w);
    }

    #[test]
    fn huge_weights_are_scaled() {
        let s = Schedule::build(&[u32::MAX, u32::MAX - 1, 1]);
        assert!(s.order().len() as u64 <= MAX_CYCLE + 3);
        assert!(s.order().contains(&2));
    }
}
