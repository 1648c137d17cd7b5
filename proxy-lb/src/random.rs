//! Weighted random: each healthy endpoint is picked with probability weight / total
//! weight of the healthy endpoints.
//!
//! The cumulative weights of the endpoint set are computed when it changes; a pick
//! draws a number below the total and binary-searches it (O(log n)), drawing again
//! when it lands on an unhealthy endpoint, which leaves the healthy ones exactly in
//! proportion. After a few unlucky draws an exact pass over the healthy endpoints
//! decides.

use std::{fmt, sync::Arc};

use proxy_core::{Balancer, Endpoint};
use serde::{Deserialize, Serialize};

use crate::{table::TableCell, Backend};

/// Config of `random` (no settings).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomConfig {}

/// The weighted random balancer.
///
/// # Example
/// ```
/// use proxy_lb::{random::Random, StaticBackend};
///
/// let backends = [StaticBackend::new("a", 1), StaticBackend::new("b", 3)];
/// backends[0].set_healthy(false);
/// assert_eq!(Random::default().pick_from(&backends), Some(1));
/// ```
#[derive(Debug, Default)]
pub struct Random {
    cumulative: TableCell<Cumulative>,
}

/// Cumulative weights: `ends[i]` is the sum of the weights of backends `0..=i`.
pub(crate) struct Cumulative {
    ends: Box<[u64]>,
}

impl fmt::Debug for Cumulative {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cumulative")
            .field("backends", &self.ends.len())
            .field("total", &self.ends.last())
            .finish()
    }
}

impl Cumulative {
    fn build<B: Backend>(backends: &[B], _prev: Option<&Self>) -> Self {
        let mut sum = 0u64;
        Self {
            ends: backends
                .iter()
                .map(|b| {
                    sum += u64::from(b.weight());
                    sum
                })
                .collect(),
        }
    }

    /// A backend index drawn by weight, health not considered.
    fn draw(&self) -> Option<usize> {
        let total = *self.ends.last()?;
        if total == 0 {
            return None;
        }
        let r = fastrand::u64(..total);
        Some(self.ends.partition_point(|&end| end <= r))
    }
}

impl Random {
    /// A balancer from its parsed config.
    pub fn new(_config: &RandomConfig) -> Self {
        Self::default()
    }

    /// Computes the cumulative weights of a new endpoint set, off the request path.
    pub fn prepare<B: Backend + Send + Sync + 'static>(&self, backends: &Arc<[B]>) {
        self.cumulative.publish(backends, Cumulative::build);
    }

    /// Picks a healthy backend with probability proportional to its weight.
    pub fn pick_from<B: Backend>(&self, backends: &[B]) -> Option<usize> {
        let drawn = self.cumulative.with(backends, Cumulative::build, |c| {
            let c = c?;
            (0..4)
                .filter_map(|_| c.draw())
                .find(|&i| backends.get(i).is_some_and(|b| b.is_healthy()))
        });
        drawn.or_else(|| pick_weighted(backends))
    }
}

impl Balancer for Random {
    fn pick(&self, endpoints: &[Arc<Endpoint>], _req: &http::request::Parts) -> Option<usize> {
        self.pick_from(endpoints)
    }

    fn endpoints_changed(&self, endpoints: &Arc<[Arc<Endpoint>]>) {
        self.prepare(endpoints);
    }
}

/// Weighted random over the healthy backends: two passes, no allocation. Backends
/// of weight 0 are picked (uniformly) only when every healthy backend has weight 0.
pub(crate) fn pick_weighted<B: Backend>(backends: &[B]) -> Option<usize> {
    let total: u64 = backends
        .iter()
        .filter(|b| b.is_healthy())
        .map(|b| u64::from(b.weight()))
        .sum();
    if total == 0 {
        return crate::backend::random_healthy(backends);
    }
    let mut r = fastrand::u64(..total);
    let mut last = None;
    for (i, b) in backends.iter().enumerate() {
        // Health may flip between the passes: fall back to the last healthy one seen.
        if !b.is_healthy() {
            continue;
        }
        let w = u64::from(b.weight());
        if r < w {
            return Some(i);
        }
        r -= w;
        if w > 0 {
            last = Some(i);
        }
    }
    last.or_else(|| crate::backend::random_healthy(backends))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StaticBackend;

    #[test]
    fn follows_weights() {
        let b = [
            StaticBackend::new("a", 1),
            StaticBackend::new("b", 3),
            StaticBackend::new("c", 6),
        ];
        let mut counts = [0u32; 3];
        for _ in 0..20_000 {
            counts[pick_weighted(&b).unwrap_or(9)] += 1;
        }
        assert!((1_500..2_500).contains(&counts[0]), "{counts:?}");
        assert!((5_000..7_000).contains(&counts[1]), "{counts:?}");
        assert!((11_000..13_000).contains(&counts[2]), "{counts:?}");
    }

    #[test]
    fn balancer_follows_weights_among_healthy() {
        let b: Arc<[StaticBackend]> = vec![
            StaticBackend::new("a", 1),
            StaticBackend::new("b", 3),
            StaticBackend::new("c", 6),
            StaticBackend::new("d", 50),
        ]
        .into();
        b[3].set_healthy(false);
        let r = Random::default();
        r.prepare(&b);
        let mut counts = [0u32; 4];
        for _ in 0..20_000 {
            counts[r.pick_from(&b).unwrap_or(3)] += 1;
        }
        assert_eq!(counts[3], 0);
        assert!((1_500..2_500).contains(&counts[0]), "{counts:?}");
        assert!((5_000..7_000).contains(&counts[1]), "{counts:?}");
        assert!((11_000..13_000).contains(&counts[2]), "{counts:?}");
    }

    #[test]
    fn none_when_all_unhealthy() {
        let b = [StaticBackend::new("a", 1)];
        b[0].set_healthy(false);
        assert_eq!(pick_weighted(&b), None);
        assert_eq!(pick_weighted::<StaticBackend>(&[]), None);
    }

    #[test]
    fn rejects_fields() {
        let section: proxy_core::config::Section =
            proxy_core::config::from_yaml("x: 1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            section.parse::<RandomConfig>().map_err(|e| e.path),
            Err("x".to_owned())
        );
        assert!(proxy_core::config::Section::empty()
            .parse::<RandomConfig>()
            .is_ok());
    }
}
