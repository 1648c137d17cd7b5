//! Traffic steering and releases: rules that match a request's headers, method, path
//! or RPC service/method (with proxy-core's [`HeaderMatch`] and [`StringMatch`]) and
//! send it to a named endpoint group (blue-green and canary splits by weight) or
//! redirect it to another cluster (per application or interface).
//!
//! The `traffic_steering` filter puts a [`TargetGroup`] in the request extensions,
//! honoured by the `subset` (or `zone_aware`) balancer, which picks among endpoints
//! whose `metadata.group` equals it; a cluster target becomes a
//! `proxy_core::ClusterOverride`. Rules are swapped whole, live, through a
//! [`SteeringHandle`] (a config reload builds a new rule set).

mod config;
mod filter;
mod handle;
mod metrics;
mod registry;
mod rules;
mod subset;

#[cfg(test)]
mod tests;

pub use config::{MatchConfig, RuleConfig, SteeringConfig, TargetConfig, WeightedName};
pub use filter::{TrafficSteering, TrafficSteeringLayer};
pub use handle::SteeringHandle;
pub(crate) use metrics::escape;
pub use metrics::SteeringCounters;
pub use proxy_core::matcher::{HeaderMatch, StringMatch};
pub use registry::register;
pub(crate) use registry::subset_balancer;
pub use rules::{RequestView, Rule, RuleSet, SteeringTarget};
pub use subset::{Fallback, Subset, SubsetConfig};

/// The endpoint group a request must go to, put in the request extensions by the
/// `traffic_steering` filter; the `subset` balancer picks among the endpoints whose
/// `metadata.group` equals it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetGroup(pub std::sync::Arc<str>);
