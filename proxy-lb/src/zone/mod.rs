//! Zone (LDC) routing: zones grouped into data centres grouped into cities.
//!
//! The `zone_routing` HTTP filter decides each request's zone (a peer proxy's forward
//! header, the uid shard map, the zone cookie, or a weighted random draw), fails over
//! to the nearest available zone (same data centre, then same city, then another city),
//! and then either puts a [`TargetZone`] in the request extensions, honoured by the
//! `zone_aware` balancer of the local cluster, or forwards the request to the proxy
//! cluster of the zone's remote data centre. The response sets the zone cookie.

mod config;
mod decide;
mod filter;
mod metrics;
mod registry;
mod topology;

#[cfg(test)]
mod tests;

pub use config::{ShardRange, UidConfig, UidSource, ZoneConfig, ZoneRoutingConfig};
pub use decide::{
    cookie_value, decide, fail_over, query_value, ZoneDecision, ZoneInputs, ZoneSource,
};
pub use filter::{ResponseFuture, ZoneRouting, ZoneRoutingLayer};
pub use metrics::ZoneCounters;
pub use registry::register;
pub use topology::{uid_shard, FailoverStep, Topology, Zone, ZoneId};

/// The zone a request must be served in, put in the request extensions by the
/// `zone_routing` filter; the `zone_aware` balancer picks among the endpoints whose
/// `metadata.zone` equals it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetZone(pub std::sync::Arc<str>);
