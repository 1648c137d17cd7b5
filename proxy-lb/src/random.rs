//! Weighted random: each healthy endpoint is picked with probability weight / total
//! weight of the healthy endpoints.

use std::sync::Arc;

use proxy_core::{Balancer, Endpoint};
use serde::{Deserialize, Serialize};

use crate::{config, Backend, ConfigError};

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
#[derive(Debug, Clone, Default)]
pub struct Random {
    _private: (),
}

impl Random {
    /// A balancer from its parsed config.
    pub fn new(_config: &RandomConfig) -> Self {
        Self::default()
    }

    /// A balancer from its YAML section.
    ///
    /// # Errors
    /// Any field present (the policy has none).
    pub fn from_yaml(section: &serde_yaml::Value) -> Result<Self, ConfigError> {
        Ok(Self::new(&config::parse::<RandomConfig>(section)?))
    }

    /// Picks a healthy backend with probability proportional to its weight.
    pub fn pick_from<B: Backend>(&self, backends: &[B]) -> Option<usize> {
        pick_weighted(backends)
    }
}

impl Balancer for Random {
    fn pick(&self, endpoints: &[Arc<Endpoint>], _req: &http::request::Parts) -> Option<usize> {
        self.pick_from(endpoints)
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
    fn none_when_all_unhealthy() {
        let b = [StaticBackend::new("a", 1)];
        b[0].set_healthy(false);
        assert_eq!(pick_weighted(&b), None);
        assert_eq!(pick_weighted::<StaticBackend>(&[]), None);
    }

    #[test]
    fn rejects_fields() {
        let v: serde_yaml::Value = serde_yaml::from_str("x: 1").unwrap_or_default();
        assert!(Random::from_yaml(&v).is_err());
        assert!(Random::from_yaml(&serde_yaml::Value::Null).is_ok());
    }
}
