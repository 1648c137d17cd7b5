//! Least request by the power of (two) random choices: draw `choice_count` healthy
//! endpoints at random and send to the one with the fewest requests in flight per
//! unit of weight.
//!
//! Load is compared as `(active + 1) / weight` (cross-multiplied, no division): the
//! `+ 1` makes an idle heavy endpoint win over an idle light one, so weights count
//! even when the cluster is quiet.

use std::sync::Arc;

use proxy_core::{Balancer, Endpoint};
use serde::{Deserialize, Serialize};

use crate::{
    backend::{random_healthy, random_healthy_except},
    Backend, ConfigError,
};

/// Config of `least_request`.
///
/// ```yaml
/// lb:
///   typed: least_request
///   config:
///     choice_count: 2     # endpoints compared per pick, 2..=16
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeastRequestConfig {
    /// How many random endpoints are compared per pick.
    #[serde(default = "default_choice_count")]
    pub choice_count: u32,
}

impl Default for LeastRequestConfig {
    fn default() -> Self {
        Self {
            choice_count: default_choice_count(),
        }
    }
}

fn default_choice_count() -> u32 {
    2
}

/// The least-request (power of two choices) balancer.
///
/// # Example
/// ```
/// use proxy_lb::{least_request::LeastRequest, StaticBackend};
///
/// let backends = [StaticBackend::new("a", 1), StaticBackend::new("b", 1)];
/// backends[0].set_active(10);
/// let lr = LeastRequest::default();
/// // The two draws are distinct: `b` is always one of them and wins.
/// assert_eq!(lr.pick_from(&backends), Some(1));
/// ```
#[derive(Debug, Clone)]
pub struct LeastRequest {
    choices: u32,
}

impl Default for LeastRequest {
    fn default() -> Self {
        Self { choices: 2 }
    }
}

impl LeastRequest {
    /// A balancer from a validated config.
    ///
    /// # Errors
    /// `choice_count` outside 2..=16.
    pub fn new(config: &LeastRequestConfig) -> Result<Self, ConfigError> {
        if !(2..=16).contains(&config.choice_count) {
            return Err(ConfigError::invalid(
                "choice_count",
                format!("{} is outside 2..=16", config.choice_count),
            ));
        }
        Ok(Self {
            choices: config.choice_count,
        })
    }

    /// The least loaded of `choice_count` random healthy backends (each drawn
    /// distinct from the best so far, when another healthy one exists).
    pub fn pick_from<B: Backend>(&self, backends: &[B]) -> Option<usize> {
        let mut best = random_healthy(backends)?;
        for _ in 1..self.choices {
            let Some(other) = random_healthy_except(backends, Some(best)) else {
                break;
            };
            if less_loaded(&backends[other], &backends[best]) {
                best = other;
            }
        }
        Some(best)
    }
}

/// Whether `a` carries less load per unit of weight than `b`.
fn less_loaded<B: Backend>(a: &B, b: &B) -> bool {
    let la = u128::from(a.active_requests()) + 1;
    let lb = u128::from(b.active_requests()) + 1;
    // la / wa < lb / wb  <=>  la * wb < lb * wa; weight 0 counts as infinitely loaded.
    la * u128::from(b.weight()) < lb * u128::from(a.weight())
}

impl TryFrom<&LeastRequestConfig> for LeastRequest {
    type Error = ConfigError;

    fn try_from(config: &LeastRequestConfig) -> Result<Self, ConfigError> {
        Self::new(config)
    }
}

impl Balancer for LeastRequest {
    fn pick(&self, endpoints: &[Arc<Endpoint>], _req: &http::request::Parts) -> Option<usize> {
        self.pick_from(endpoints)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StaticBackend;

    #[test]
    fn prefers_less_loaded_per_weight() {
        let a = StaticBackend::new("a", 1);
        let b = StaticBackend::new("b", 4);
        a.set_active(1);
        b.set_active(4);
        // (1+1)/1 = 2 > (4+1)/4
        assert!(less_loaded(&b, &a));
        assert!(!less_loaded(&a, &b));
    }

    #[test]
    fn load_steers_picks() {
        let backends: Vec<StaticBackend> = (0..4)
            .map(|i| StaticBackend::new(format!("e{i}"), 1))
            .collect();
        backends[0].set_active(100);
        let lr = LeastRequest::default();
        let hits = (0..4000)
            .filter(|_| lr.pick_from(&backends) == Some(0))
            .count();
        // Two distinct draws: the loaded one never wins.
        assert_eq!(hits, 0);
    }

    #[test]
    fn validates_choice_count() {
        let e = LeastRequest::new(&LeastRequestConfig { choice_count: 1 }).err();
        assert_eq!(e.as_ref().map(ConfigError::field), Some("choice_count"));
        let section = proxy_core::config::Section::empty();
        let cfg: LeastRequestConfig = section.parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(LeastRequest::new(&cfg).is_ok());
    }
}
