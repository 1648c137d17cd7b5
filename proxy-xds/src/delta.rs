//! Delta (incremental) ADS: the resources held per type with their versions, the
//! subscriptions, and the requests (subscribe, unsubscribe, ACK, NACK) that follow a
//! response. Pure: no I/O, so every protocol step is unit-tested.
//!
//! A delta response changes the held set of its type (resources added or updated,
//! `removed_resources` dropped), and goes through the same translation and
//! validation as a state-of-the-world response of that type ([`AdsState::prepare`]):
//! for clusters and listeners, whose state-of-the-world responses are the whole set,
//! the resulting held set; for endpoints, routes and secrets, which keep what a
//! response leaves out, only the resources updated, then the removals. Both variants
//! build the same config, and a refused response changes nothing.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use envoy_types::pb::{
    envoy::{
        config::{
            cluster::v3::Cluster, core::v3::Node, endpoint::v3::ClusterLoadAssignment,
            listener::v3::Listener, route::v3::RouteConfiguration,
        },
        extensions::transport_sockets::tls::v3::Secret,
        service::discovery::v3::{
            DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryResponse, Resource,
        },
    },
    google::{protobuf::Any, rpc::Status},
};
use proxy_core::config::Config;

use crate::{
    resources::{self, CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE},
    state::{AdsState, INVALID_ARGUMENT},
    Refusal,
};

/// One resource as accepted: its version (from the control plane) and its bytes.
#[derive(Debug, Clone, PartialEq)]
struct Held {
    version: String,
    any: Any,
}

/// Everything accepted over a delta stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct DeltaState {
    /// The translated state, shared with state of the world: versions (the
    /// responses' `system_version_info`), subscriptions, resources.
    pub(crate) ads: AdsState,
    /// The resources held per type URL, by name.
    held: BTreeMap<&'static str, BTreeMap<String, Held>>,
}

impl DeltaState {
    /// A state that asks for clusters and endpoints, and listeners and routes when
    /// `listeners` is set.
    pub(crate) fn new(listeners: bool) -> Self {
        Self {
            ads: AdsState::new(listeners),
            held: BTreeMap::new(),
        }
    }

    /// Asks for the secrets `names` too (SDS).
    pub(crate) fn with_secrets(mut self, names: &[String]) -> Self {
        self.ads = self.ads.with_secrets(names);
        self
    }

    /// The version of each held resource of `type_url`, as sent in
    /// `initial_resource_versions`.
    pub(crate) fn versions(&self, type_url: &str) -> BTreeMap<String, String> {
        self.held
            .get(type_url)
            .map(|held| {
                held.iter()
                    .map(|(name, h)| (name.clone(), h.version.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The requests that open a stream: CDS (wildcard), EDS for the endpoints asked
    /// for, then LDS (wildcard) and RDS when listeners are asked for; each carries
    /// the versions of the resources held (`initial_resource_versions`) so the
    /// control plane sends only what changed. The node goes on the first only.
    pub(crate) fn open(&self, node: Node) -> Vec<DeltaDiscoveryRequest> {
        let mut out = vec![self.opening(CLUSTER_TYPE, &BTreeSet::new())];
        if !self.ads.eds_names.is_empty() {
            out.push(self.opening(ENDPOINT_TYPE, &self.ads.eds_names));
        }
        if self.ads.lds_enabled {
            out.push(self.opening(LISTENER_TYPE, &BTreeSet::new()));
            if !self.ads.rds_names.is_empty() {
                out.push(self.opening(ROUTE_TYPE, &self.ads.rds_names));
            }
        }
        if !self.ads.sds_names.is_empty() {
            out.push(self.opening(SECRET_TYPE, &self.ads.sds_names));
        }
        if let Some(first) = out.first_mut() {
            first.node = Some(node);
        }
        out
    }

    /// The first request of `type_url` on a stream. An empty subscription on the
    /// first request is a wildcard one (the form every control plane reads).
    fn opening(&self, type_url: &str, names: &BTreeSet<String>) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: type_url.into(),
            resource_names_subscribe: names.iter().cloned().collect(),
            initial_resource_versions: self.versions(type_url).into_iter().collect(),
            ..DeltaDiscoveryRequest::default()
        }
    }

    /// The type URL of `type_url` if it is subscribed.
    fn subscribed(&self, type_url: &str) -> Option<&'static str> {
        match type_url {
            CLUSTER_TYPE => Some(CLUSTER_TYPE),
            ENDPOINT_TYPE => Some(ENDPOINT_TYPE),
            LISTENER_TYPE if self.ads.lds_enabled => Some(LISTENER_TYPE),
            ROUTE_TYPE if self.ads.lds_enabled => Some(ROUTE_TYPE),
            SECRET_TYPE if !self.ads.sds_names.is_empty() => Some(SECRET_TYPE),
            _ => None,
        }
    }

    /// Whether a resource `name` of `type_url` is asked for: every cluster and
    /// listener (wildcard), the endpoints and routes named by accepted ones.
    fn wants(&self, type_url: &str, name: &str) -> bool {
        match type_url {
            ENDPOINT_TYPE => self.ads.eds_names.contains(name),
            ROUTE_TYPE => self.ads.rds_names.contains(name),
            SECRET_TYPE => self.ads.sds_names.contains(name),
            _ => true,
        }
    }

    /// Validates `resp` and returns the state it would lead to; nothing changes
    /// here. The caller applies the candidate's config, then [`DeltaState::accept`]s
    /// it or [`DeltaState::reject`]s the response.
    ///
    /// # Errors
    /// The first refused resource, or a response of a type not subscribed.
    pub(crate) fn prepare(
        &self,
        resp: &DeltaDiscoveryResponse,
        base: &Config,
    ) -> Result<Self, Refusal> {
        let Some(type_url) = self.subscribed(&resp.type_url) else {
            let which = self.ads.subscribed_types();
            return Err(Refusal::new(
                "",
                "type_url",
                format!("{:?} is not subscribed ({which})", resp.type_url),
            ));
        };
        if !resp.removed_resource_names.is_empty() {
            return Err(Refusal::new(
                "",
                "removed_resource_names",
                "not supported: resources are named by removed_resources",
            ));
        }
        let mut held = self.held.get(type_url).cloned().unwrap_or_default();
        let mut seen = HashSet::new();
        for (i, r) in resp.resources.iter().enumerate() {
            let at = format!("resources[{i}]");
            let any = check_resource(r, type_url, &at)?;
            if !seen.insert(r.name.as_str()) {
                return Err(Refusal::new(
                    at,
                    "name",
                    format!("{:?} appears twice in the response", r.name),
                ));
            }
            if self.wants(type_url, &r.name) {
                let version = r.version.clone();
                held.insert(r.name.clone(), Held { version, any });
            }
        }
        for (i, name) in resp.removed_resources.iter().enumerate() {
            if seen.contains(name.as_str()) {
                return Err(Refusal::new(
                    format!("removed_resources[{i}]"),
                    "",
                    format!("{name:?} is also among the resources of the response"),
                ));
            }
            held.remove(name);
        }
        // Clusters and listeners are a whole set in state of the world: the held set
        // goes through. Endpoints, routes and secrets keep those a response leaves
        // out, so only what changed is translated again (removals follow below).
        let resources = match type_url {
            CLUSTER_TYPE | LISTENER_TYPE => held.values().map(|h| h.any.clone()).collect(),
            _ => resp
                .resources
                .iter()
                .filter_map(|r| r.resource.clone())
                .collect(),
        };
        let whole = DiscoveryResponse {
            type_url: type_url.into(),
            version_info: resp.system_version_info.clone(),
            nonce: resp.nonce.clone(),
            resources,
            ..DiscoveryResponse::default()
        };
        let mut next = Self {
            ads: self.ads.prepare(&whole, base)?,
            held: self.held.clone(),
        };
        // The held set is the whole set: EDS and RDS resources removed go too.
        match type_url {
            ENDPOINT_TYPE => next.ads.endpoints.retain(|n, _| held.contains_key(n)),
            ROUTE_TYPE => next.ads.routes.retain(|n, _| held.contains_key(n)),
            SECRET_TYPE => next.ads.secrets.retain(|n, _| held.contains_key(n)),
            CLUSTER_TYPE => {
                let names = &next.ads.eds_names;
                if let Some(eds) = next.held.get_mut(ENDPOINT_TYPE) {
                    eds.retain(|n, _| names.contains(n));
                }
            }
            _ => {
                // LISTENER_TYPE, the only other type subscribed.
                let names = &next.ads.rds_names;
                if let Some(rds) = next.held.get_mut(ROUTE_TYPE) {
                    rds.retain(|n, _| names.contains(n));
                }
            }
        }
        // Clusters and listeners name secrets: those no longer named go.
        if matches!(type_url, CLUSTER_TYPE | LISTENER_TYPE) {
            let names = &next.ads.sds_names;
            if let Some(sds) = next.held.get_mut(SECRET_TYPE) {
                sds.retain(|n, _| names.contains(n));
            }
        }
        next.held.insert(type_url, held);
        Ok(next)
    }

    /// Takes the candidate `next`, whose config was applied, and returns the
    /// requests that follow: the change of the EDS (RDS) subscription when the
    /// clusters (listeners) name other resources, then the ACK of `resp`.
    pub(crate) fn accept(
        &mut self,
        next: Self,
        resp: &DeltaDiscoveryResponse,
    ) -> Vec<DeltaDiscoveryRequest> {
        let (state, out) = self.advance(next, &resp.type_url, &resp.nonce);
        *self = state;
        out
    }

    /// [`DeltaState::accept`] without changing `self`: the state after the
    /// candidate `next` (of the response of `type_url` with `nonce`) and the
    /// requests that follow.
    pub(crate) fn advance(
        &self,
        next: Self,
        type_url: &str,
        nonce: &str,
    ) -> (Self, Vec<DeltaDiscoveryRequest>) {
        let mut out = Vec::new();
        if let Some(change) = resubscribe(ENDPOINT_TYPE, &self.ads.eds_names, &next.ads.eds_names) {
            out.push(change);
        }
        if let Some(change) = resubscribe(ROUTE_TYPE, &self.ads.rds_names, &next.ads.rds_names) {
            out.push(change);
        }
        if let Some(change) = resubscribe(SECRET_TYPE, &self.ads.sds_names, &next.ads.sds_names) {
            out.push(change);
        }
        let state = Self {
            ads: next.ads.activated(),
            held: next.held,
        };
        out.push(DeltaDiscoveryRequest {
            type_url: type_url.to_owned(),
            response_nonce: nonce.to_owned(),
            ..DeltaDiscoveryRequest::default()
        });
        (state, out)
    }

    /// The NACK of `resp`: its nonce and `refusal` as the error detail.
    pub(crate) fn reject(
        &self,
        resp: &DeltaDiscoveryResponse,
        refusal: &Refusal,
    ) -> DeltaDiscoveryRequest {
        self.nack(&resp.type_url, &resp.nonce, refusal)
    }

    /// The NACK of the response of `type_url` with `nonce` ([`DeltaState::reject`]).
    pub(crate) fn nack(
        &self,
        type_url: &str,
        nonce: &str,
        refusal: &Refusal,
    ) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: type_url.to_owned(),
            response_nonce: nonce.to_owned(),
            error_detail: Some(Status {
                code: INVALID_ARGUMENT,
                message: refusal.to_string(),
                details: Vec::new(),
            }),
            ..DeltaDiscoveryRequest::default()
        }
    }
}

/// The request that moves the subscription of `type_url` from `old` to `new`, if
/// they differ.
fn resubscribe(
    type_url: &str,
    old: &BTreeSet<String>,
    new: &BTreeSet<String>,
) -> Option<DeltaDiscoveryRequest> {
    let subscribe: Vec<String> = new.difference(old).cloned().collect();
    let unsubscribe: Vec<String> = old.difference(new).cloned().collect();
    (!subscribe.is_empty() || !unsubscribe.is_empty()).then(|| DeltaDiscoveryRequest {
        type_url: type_url.into(),
        resource_names_subscribe: subscribe,
        resource_names_unsubscribe: unsubscribe,
        ..DeltaDiscoveryRequest::default()
    })
}

/// Checks the `Resource` wrapper of a delta response (a name, a resource of the
/// response's type whose own name is that name; no TTL or cache control) and
/// returns the resource.
fn check_resource(r: &Resource, type_url: &str, at: &str) -> Result<Any, Refusal> {
    if r.ttl.is_some() {
        return Err(Refusal::new(
            at,
            "ttl",
            "not supported: it would change behaviour",
        ));
    }
    if r.cache_control.is_some() {
        return Err(Refusal::new(
            at,
            "cache_control",
            "not supported: it would change behaviour",
        ));
    }
    if r.name.is_empty() {
        return Err(Refusal::new(at, "name", "must not be empty"));
    }
    let any = r.resource.clone().ok_or_else(|| {
        Refusal::new(
            at,
            "resource",
            "missing (a heartbeat, which is not supported)",
        )
    })?;
    let own = own_name(&any, type_url, at)?;
    if own != r.name {
        return Err(Refusal::new(
            at,
            "name",
            format!(
                "{:?} differs from the name in the resource, {own:?}",
                r.name
            ),
        ));
    }
    Ok(any)
}

/// The name a resource gives itself (`Cluster.name`,
/// `ClusterLoadAssignment.cluster_name`, ...); refuses bytes that do not decode.
fn own_name(any: &Any, type_url: &str, at: &str) -> Result<String, Refusal> {
    Ok(match type_url {
        CLUSTER_TYPE => resources::decode::<Cluster>(any, type_url, at)?.name,
        ENDPOINT_TYPE => {
            resources::decode::<ClusterLoadAssignment>(any, type_url, at)?.cluster_name
        }
        LISTENER_TYPE => resources::decode::<Listener>(any, type_url, at)?.name,
        SECRET_TYPE => resources::decode::<Secret>(any, type_url, at)?.name,
        _ => resources::decode::<RouteConfiguration>(any, type_url, at)?.name,
    })
}

#[cfg(test)]
#[path = "delta_tests.rs"]
mod tests;
