//! The state of the world as accepted: versions, nonces, subscriptions and resources
//! per type, and the requests (ACK, NACK, subscription) that follow a response.
//! Pure: no I/O, so every protocol step is unit-tested. Listeners and routes (LDS,
//! RDS) are in `state_lds.rs`.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use envoy_types::pb::{
    envoy::{
        config::{cluster::v3::Cluster, core::v3::Node, endpoint::v3::ClusterLoadAssignment},
        service::discovery::v3::{DiscoveryRequest, DiscoveryResponse},
    },
    google::rpc::Status,
};
use proxy_core::config::{ClusterConfig, Config, EndpointConfig};

use crate::{
    resources::{self, XdsCluster, XdsListener, XdsRoutes, CLUSTER_TYPE, ENDPOINT_TYPE},
    resources::{XdsSecret, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE},
    Refusal,
};

#[path = "state_lds.rs"]
mod lds;
#[path = "state_sds.rs"]
mod sds;

pub(crate) use lds::ResolvedListener;

/// gRPC's INVALID_ARGUMENT, the code of a NACK's `error_detail`.
pub(crate) const INVALID_ARGUMENT: i32 = 3;

/// Version and nonce of one resource type.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Versions {
    /// The last accepted `version_info`.
    pub(crate) version: String,
    /// The nonce of the last response of this type on the current stream.
    pub(crate) nonce: String,
}

/// Everything accepted from the control plane.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct AdsState {
    pub(crate) cds: Versions,
    pub(crate) eds: Versions,
    /// Accepted clusters by name.
    pub(crate) clusters: BTreeMap<String, XdsCluster>,
    /// Accepted endpoints by EDS resource name (only subscribed names are kept).
    pub(crate) endpoints: BTreeMap<String, Vec<EndpointConfig>>,
    /// The EDS resource names asked for.
    pub(crate) eds_names: BTreeSet<String>,
    /// Whether listeners (LDS) are asked for.
    pub(crate) lds_enabled: bool,
    pub(crate) lds: Versions,
    pub(crate) rds: Versions,
    /// Accepted listeners by name.
    pub(crate) listeners: BTreeMap<String, XdsListener>,
    /// Accepted route configurations by name (only subscribed names are kept).
    pub(crate) routes: BTreeMap<String, XdsRoutes>,
    /// The RDS resource names asked for.
    pub(crate) rds_names: BTreeSet<String>,
    /// The listeners of the applied config, by name: a listener whose new routes
    /// have not arrived yet keeps serving with these (Envoy's warming).
    pub(crate) active: BTreeMap<String, ResolvedListener>,
    pub(crate) sds: Versions,
    /// The SDS secret names asked for (none: no SDS).
    pub(crate) sds_names: BTreeSet<String>,
    /// Accepted secrets by name (only subscribed names are kept).
    pub(crate) secrets: BTreeMap<String, XdsSecret>,
    /// The secrets the bootstrap asks for; `sds_names` adds those clusters name.
    pub(crate) sds_bootstrap: BTreeSet<String>,
    /// The clusters of the applied config, by name: a cluster whose secrets have
    /// not arrived keeps serving with these (Envoy's warming).
    pub(crate) active_clusters: BTreeMap<String, ClusterConfig>,
}

impl AdsState {
    /// A state that asks for listeners and routes too when `lds` is set.
    pub(crate) fn new(lds: bool) -> Self {
        Self {
            lds_enabled: lds,
            ..Self::default()
        }
    }

    /// The requests that open a stream: CDS (wildcard) with the accepted version,
    /// EDS with the current subscription if there is one, then LDS (wildcard) and
    /// RDS likewise when listeners are asked for. The node goes on the first only.
    /// Nonces belong to a stream and are forgotten.
    pub(crate) fn open(&mut self, node: Node) -> Vec<DiscoveryRequest> {
        self.cds.nonce.clear();
        self.eds.nonce.clear();
        self.lds.nonce.clear();
        self.rds.nonce.clear();
        self.sds.nonce.clear();
        let mut out = vec![self.cds_request()];
        if !self.eds_names.is_empty() {
            out.push(self.eds_request());
        }
        if self.lds_enabled {
            out.push(self.lds_request());
            if !self.rds_names.is_empty() {
                out.push(self.rds_request());
            }
        }
        if !self.sds_names.is_empty() {
            out.push(self.sds_request());
        }
        if let Some(first) = out.first_mut() {
            first.node = Some(node);
        }
        out
    }

    fn cds_request(&self) -> DiscoveryRequest {
        DiscoveryRequest {
            type_url: CLUSTER_TYPE.into(),
            version_info: self.cds.version.clone(),
            response_nonce: self.cds.nonce.clone(),
            ..DiscoveryRequest::default()
        }
    }

    fn eds_request(&self) -> DiscoveryRequest {
        DiscoveryRequest {
            type_url: ENDPOINT_TYPE.into(),
            version_info: self.eds.version.clone(),
            response_nonce: self.eds.nonce.clone(),
            resource_names: self.eds_names.iter().cloned().collect(),
            ..DiscoveryRequest::default()
        }
    }

    /// Validates every resource of `resp` and returns the state it would lead to;
    /// nothing changes here. The caller applies the candidate's config, then
    /// [`AdsState::accept`]s it or [`AdsState::reject`]s the response.
    ///
    /// # Errors
    /// The first refused resource, or a response of a type not subscribed.
    pub(crate) fn prepare(&self, resp: &DiscoveryResponse, base: &Config) -> Result<Self, Refusal> {
        let mut next = self.clone();
        match resp.type_url.as_str() {
            CLUSTER_TYPE => {
                next.clusters = clusters(resp, base)?;
                next.eds_names = next
                    .clusters
                    .values()
                    .filter_map(|c| c.eds_service.clone())
                    .collect();
                next.endpoints
                    .retain(|name, _| next.eds_names.contains(name));
                next.resubscribe_secrets();
                next.cds = Versions {
                    version: resp.version_info.clone(),
                    nonce: resp.nonce.clone(),
                };
            }
            ENDPOINT_TYPE => {
                let mut names = HashSet::new();
                for (i, any) in resp.resources.iter().enumerate() {
                    let at = format!("resources[{i}]");
                    let cla: ClusterLoadAssignment = resources::decode(any, ENDPOINT_TYPE, &at)?;
                    if !names.insert(cla.cluster_name.clone()) {
                        return Err(Refusal::new(
                            at,
                            "cluster_name",
                            format!("{:?} appears twice in the response", cla.cluster_name),
                        ));
                    }
                    let eps = resources::load_assignment(&cla)?;
                    // Resources not asked for are ignored, as Envoy does.
                    if self.eds_names.contains(&cla.cluster_name) {
                        next.endpoints.insert(cla.cluster_name, eps);
                    }
                }
                next.eds = Versions {
                    version: resp.version_info.clone(),
                    nonce: resp.nonce.clone(),
                };
            }
            LISTENER_TYPE if self.lds_enabled => {
                next.prepare_listeners(resp, base)?;
            }
            ROUTE_TYPE if self.lds_enabled => {
                next.prepare_routes(resp)?;
            }
            SECRET_TYPE if !self.sds_names.is_empty() => {
                next.prepare_secrets(resp)?;
            }
            other => {
                let which = self.subscribed_types();
                return Err(Refusal::new(
                    "",
                    "type_url",
                    format!("{other:?} is not subscribed ({which})"),
                ));
            }
        }
        Ok(next)
    }

    /// Takes the candidate `next`, whose config was applied, and returns the
    /// requests that follow: the EDS (RDS) subscription when it changed, then the
    /// ACK of the response.
    pub(crate) fn accept(&mut self, next: Self, resp: &DiscoveryResponse) -> Vec<DiscoveryRequest> {
        let (state, out) = self.advance(next, &resp.type_url);
        *self = state;
        out
    }

    /// [`AdsState::accept`] without changing `self`: the state after the
    /// candidate `next` (of a response of `type_url`) and the requests that follow.
    pub(crate) fn advance(&self, next: Self, type_url: &str) -> (Self, Vec<DiscoveryRequest>) {
        let eds_changed = next.eds_names != self.eds_names;
        let rds_changed = next.rds_names != self.rds_names;
        let sds_changed = next.sds_names != self.sds_names;
        let state = next.activated();
        let mut out = Vec::new();
        match type_url {
            CLUSTER_TYPE => {
                if eds_changed {
                    out.push(state.eds_request());
                }
                if sds_changed {
                    out.push(state.sds_request());
                }
                out.push(state.cds_request());
            }
            LISTENER_TYPE => {
                if rds_changed {
                    out.push(state.rds_request());
                }
                if sds_changed {
                    out.push(state.sds_request());
                }
                out.push(state.lds_request());
            }
            ROUTE_TYPE => out.push(state.rds_request()),
            SECRET_TYPE => out.push(state.sds_request()),
            _ => out.push(state.eds_request()),
        }
        (state, out)
    }

    /// This state with the listeners and clusters it resolves to as the serving
    /// ones.
    pub(crate) fn activated(mut self) -> Self {
        self.active = self.resolve_listeners();
        self.active_clusters = self.resolve_clusters();
        self
    }

    /// The NACK of `resp`: the previously accepted version, the response's nonce, and
    /// `refusal` as the error detail. Remembers the nonce.
    pub(crate) fn reject(
        &mut self,
        resp: &DiscoveryResponse,
        refusal: &Refusal,
    ) -> DiscoveryRequest {
        self.nack(&resp.type_url, &resp.nonce, refusal)
    }

    /// The NACK of the response of `type_url` with `nonce` ([`AdsState::reject`]).
    pub(crate) fn nack(
        &mut self,
        type_url: &str,
        nonce: &str,
        refusal: &Refusal,
    ) -> DiscoveryRequest {
        let mut req = match type_url {
            CLUSTER_TYPE => {
                self.cds.nonce = nonce.to_owned();
                self.cds_request()
            }
            ENDPOINT_TYPE => {
                self.eds.nonce = nonce.to_owned();
                self.eds_request()
            }
            LISTENER_TYPE if self.lds_enabled => {
                self.lds.nonce = nonce.to_owned();
                self.lds_request()
            }
            ROUTE_TYPE if self.lds_enabled => {
                self.rds.nonce = nonce.to_owned();
                self.rds_request()
            }
            SECRET_TYPE if !self.sds_names.is_empty() => {
                self.sds.nonce = nonce.to_owned();
                self.sds_request()
            }
            other => DiscoveryRequest {
                type_url: other.to_owned(),
                response_nonce: nonce.to_owned(),
                ..DiscoveryRequest::default()
            },
        };
        req.error_detail = Some(Status {
            code: INVALID_ARGUMENT,
            message: refusal.to_string(),
            details: Vec::new(),
        });
        req
    }

    /// `base` with the accepted clusters added (EDS ones with their accepted
    /// endpoints), the listeners whose routes are known (or their previous version
    /// while new routes are awaited), and an empty placeholder for every cluster a
    /// route names that none of these has: it answers 503 until the control plane
    /// sends it.
    pub(crate) fn config(&self, base: &Config) -> Config {
        let mut config = base.clone();
        let mut named: BTreeSet<String> = BTreeSet::new();
        for (_, l) in self.resolve_listeners() {
            named.extend(l.clusters);
            config.listeners.push(l.config);
        }
        config
            .clusters
            .extend(self.resolve_clusters().into_values());
        let known: HashSet<String> = config.clusters.iter().map(|c| c.name.clone()).collect();
        let wanted: BTreeSet<&str> = config
            .listeners
            .iter()
            .flat_map(|l| &l.virtual_hosts)
            .flat_map(|v| &v.routes)
            .map(|r| r.cluster.as_str())
            .chain(named.iter().map(String::as_str))
            .filter(|name| !known.contains(*name))
            .collect();
        for name in wanted {
            if let Some(c) = placeholder(name) {
                config.clusters.push(c);
            }
        }
        config
    }
}

impl AdsState {
    /// The xDS clusters to serve, by name, EDS ones with their endpoints. A cluster
    /// whose transport names a secret not received yet waits (Envoy's warming): its
    /// serving version stays, or an empty placeholder (503) stands in.
    pub(crate) fn resolve_clusters(&self) -> BTreeMap<String, ClusterConfig> {
        let mut out = BTreeMap::new();
        for (name, c) in &self.clusters {
            let cluster = if c.secrets.iter().all(|s| self.secrets.contains_key(s)) {
                let mut cluster = c.config.clone();
                if let Some(service) = &c.eds_service {
                    cluster.endpoints = self.endpoints.get(service).cloned().unwrap_or_default();
                }
                Some(cluster)
            } else {
                self.active_clusters
                    .get(name)
                    .cloned()
                    .or_else(|| placeholder(name))
            };
            if let Some(cluster) = cluster {
                out.insert(name.clone(), cluster);
            }
        }
        out
    }
}

/// An empty cluster named `name`.
pub(crate) fn placeholder(name: &str) -> Option<ClusterConfig> {
    proxy_core::config::from_value(&serde_json::json!({ "name": name, "endpoints": [] })).ok()
}

/// Decodes and translates every cluster of a CDS response.
fn clusters(
    resp: &DiscoveryResponse,
    base: &Config,
) -> Result<BTreeMap<String, XdsCluster>, Refusal> {
    let mut out = BTreeMap::new();
    for (i, any) in resp.resources.iter().enumerate() {
        let at = format!("resources[{i}]");
        let c: Cluster = resources::decode(any, CLUSTER_TYPE, &at)?;
        let x = resources::cluster(&c)?;
        if base.clusters.iter().any(|s| s.name == c.name) {
            return Err(Refusal::new(
                format!("cluster {:?}", c.name),
                "name",
                "a static cluster has this name",
            ));
        }
        if out.insert(c.name.clone(), x).is_some() {
            return Err(Refusal::new(
                format!("cluster {:?}", c.name),
                "name",
                "appears twice in the response",
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
