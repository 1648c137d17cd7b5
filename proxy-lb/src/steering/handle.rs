//! A live, swappable rule set.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::rules::RuleSet;

/// The rules a `traffic_steering` filter uses, swapped whole and live: requests load
/// the current set without a lock; [`SteeringHandle::store`] replaces it for every
/// later request, on every connection.
#[derive(Debug, Clone)]
pub struct SteeringHandle {
    rules: Arc<ArcSwap<RuleSet>>,
}

impl SteeringHandle {
    /// A handle holding `rules`.
    pub fn new(rules: RuleSet) -> Self {
        Self {
            rules: Arc::new(ArcSwap::from_pointee(rules)),
        }
    }

    /// Replaces the rules (already validated by [`RuleSet::new`]).
    pub fn store(&self, rules: RuleSet) {
        self.rules.store(Arc::new(rules));
    }

    /// The current rules.
    pub fn load(&self) -> arc_swap::Guard<Arc<RuleSet>> {
        self.rules.load()
    }
}
