//! The state of the world as accepted: versions, nonces, subscriptions and resources
//! per type, and the requests (ACK, NACK, subscription) that follow a response.
//! Pure: no I/O, so every protocol step is unit-tested.

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
    resources::{self, XdsCluster, CLUSTER_TYPE, ENDPOINT_TYPE},
    Refusal,
};

/// gRPC's INVALID_ARGUMENT, the code of a NACK's `error_detail`.
const INVALID_ARGUMENT: i32 = 3;

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
}

impl AdsState {
    /// The requests that open a stream: CDS (wildcard) with the accepted version,
    /// and EDS with the current subscription if there is one. The node goes on the
    /// first only. Nonces belong to a stream and are forgotten.
    pub(crate) fn open(&mut self, node: Node) -> Vec<DiscoveryRequest> {
        self.cds.nonce.clear();
        self.eds.nonce.clear();
        let mut out = vec![self.cds_request()];
        if !self.eds_names.is_empty() {
            out.push(self.eds_request());
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
            other => {
                return Err(Refusal::new(
                    "",
                    "type_url",
                    format!("{other:?} is not subscribed (CDS and EDS are)"),
                ));
            }
        }
        Ok(next)
    }

    /// Takes the candidate `next` and returns the requests that follow: the EDS
    /// subscription when it changed, then the ACK of the response.
    pub(crate) fn accept(&mut self, next: Self, resp: &DiscoveryResponse) -> Vec<DiscoveryRequest> {
        let resubscribe = next.eds_names != self.eds_names;
        *self = next;
        let mut out = Vec::new();
        if resp.type_url == CLUSTER_TYPE {
            if resubscribe {
                out.push(self.eds_request());
            }
            out.push(self.cds_request());
        } else {
            out.push(self.eds_request());
        }
        out
    }

    /// The NACK of `resp`: the previously accepted version, the response's nonce, and
    /// `refusal` as the error detail. Remembers the nonce.
    pub(crate) fn reject(
        &mut self,
        resp: &DiscoveryResponse,
        refusal: &Refusal,
    ) -> DiscoveryRequest {
        let mut req = match resp.type_url.as_str() {
            CLUSTER_TYPE => {
                self.cds.nonce.clone_from(&resp.nonce);
                self.cds_request()
            }
            ENDPOINT_TYPE => {
                self.eds.nonce.clone_from(&resp.nonce);
                self.eds_request()
            }
            other => DiscoveryRequest {
                type_url: other.to_owned(),
                response_nonce: resp.nonce.clone(),
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
    /// endpoints), and an empty placeholder for every cluster a route names that
    /// neither has: it answers 503 until the control plane sends it.
    pub(crate) fn config(&self, base: &Config) -> Config {
        let mut config = base.clone();
        for c in self.clusters.values() {
            let mut cluster = c.config.clone();
            if let Some(service) = &c.eds_service {
                cluster.endpoints = self.endpoints.get(service).cloned().unwrap_or_default();
            }
            config.clusters.push(cluster);
        }
        let known: HashSet<String> = config.clusters.iter().map(|c| c.name.clone()).collect();
        let wanted: BTreeSet<&str> = config
            .listeners
            .iter()
            .flat_map(|l| &l.virtual_hosts)
            .flat_map(|v| &v.routes)
            .map(|r| r.cluster.as_str())
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
