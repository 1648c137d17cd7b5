//! Listeners (LDS) and route configurations (RDS) in the accepted state: their
//! requests, their validation, and the listeners they resolve to.
//!
//! Ordering follows Envoy: a listener that names a route configuration or a secret
//! not received yet is left out of the config until it arrives; if a listener of that name is
//! serving already (its routes changed name, or its address), the serving version
//! stays until the new routes arrive.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use envoy_types::pb::envoy::{
    config::{listener::v3::Listener, route::v3::RouteConfiguration},
    service::discovery::v3::{DiscoveryRequest, DiscoveryResponse},
};
use proxy_core::config::{Config, ListenerConfig};

use super::{AdsState, Versions};
use crate::{
    resources::{self, RouteSource, XdsRoutes, LISTENER_TYPE, ROUTE_TYPE},
    Refusal,
};

/// A listener with its virtual hosts, and the clusters its routes name.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResolvedListener {
    pub(crate) config: ListenerConfig,
    pub(crate) clusters: BTreeSet<String>,
}

impl AdsState {
    pub(super) fn lds_request(&self) -> DiscoveryRequest {
        DiscoveryRequest {
            type_url: LISTENER_TYPE.into(),
            version_info: self.lds.version.clone(),
            response_nonce: self.lds.nonce.clone(),
            ..DiscoveryRequest::default()
        }
    }

    pub(super) fn rds_request(&self) -> DiscoveryRequest {
        DiscoveryRequest {
            type_url: ROUTE_TYPE.into(),
            version_info: self.rds.version.clone(),
            response_nonce: self.rds.nonce.clone(),
            resource_names: self.rds_names.iter().cloned().collect(),
            ..DiscoveryRequest::default()
        }
    }

    /// Takes an LDS response (the whole set of listeners): each translated, none
    /// named like a static listener or twice.
    pub(super) fn prepare_listeners(
        &mut self,
        resp: &DiscoveryResponse,
        base: &Config,
    ) -> Result<(), Refusal> {
        let mut listeners = BTreeMap::new();
        for (i, any) in resp.resources.iter().enumerate() {
            let at = format!("resources[{i}]");
            let l: Listener = resources::decode(any, LISTENER_TYPE, &at)?;
            let x = resources::listener(&l)?;
            let named =
                |reason: &str| Refusal::new(format!("listener {:?}", l.name), "name", reason);
            if base.listeners.iter().any(|s| s.name == l.name) {
                return Err(named("a static listener has this name"));
            }
            if listeners.insert(l.name.clone(), x).is_some() {
                return Err(named("appears twice in the response"));
            }
        }
        self.rds_names = listeners
            .values()
            .filter_map(|l| match &l.routes {
                RouteSource::Rds(name) => Some(name.clone()),
                _ => None,
            })
            .collect();
        let wanted = &self.rds_names;
        self.routes.retain(|name, _| wanted.contains(name));
        self.listeners = listeners;
        self.resubscribe_secrets();
        self.lds = Versions {
            version: resp.version_info.clone(),
            nonce: resp.nonce.clone(),
        };
        Ok(())
    }

    /// Takes an RDS response: every route configuration translated; those not
    /// asked for are ignored, those absent keep their last value (as for EDS).
    pub(super) fn prepare_routes(&mut self, resp: &DiscoveryResponse) -> Result<(), Refusal> {
        let mut names = HashSet::new();
        for (i, any) in resp.resources.iter().enumerate() {
            let at = format!("resources[{i}]");
            let rc: RouteConfiguration = resources::decode(any, ROUTE_TYPE, &at)?;
            if !names.insert(rc.name.clone()) {
                return Err(Refusal::new(
                    format!("route_configuration {:?}", rc.name),
                    "name",
                    "appears twice in the response",
                ));
            }
            let routes = resources::route_configuration(&rc)?;
            if self.rds_names.contains(&rc.name) {
                self.routes.insert(rc.name, routes);
            }
        }
        self.rds = Versions {
            version: resp.version_info.clone(),
            nonce: resp.nonce.clone(),
        };
        Ok(())
    }

    /// The listeners to serve, by name: those whose routes are known, else the
    /// serving version of the same name while its routes are awaited.
    pub(crate) fn resolve_listeners(&self) -> BTreeMap<String, ResolvedListener> {
        let mut out = BTreeMap::new();
        for (name, l) in &self.listeners {
            let routes: Option<&XdsRoutes> = match &l.routes {
                RouteSource::Inline(r) => Some(r),
                RouteSource::Rds(rds) => self.routes.get(rds),
            };
            let warm = l.secrets.iter().all(|n| self.secrets.contains_key(n));
            let resolved = match routes.filter(|_| warm) {
                Some(r) => {
                    let mut config = l.config.clone();
                    config.virtual_hosts.clone_from(&r.virtual_hosts);
                    crate::resources::keep_overrides_of_its_filters(&mut config);
                    Some(ResolvedListener {
                        config,
                        clusters: r.clusters.clone(),
                    })
                }
                None => self.active.get(name).cloned(),
            };
            if let Some(r) = resolved {
                out.insert(name.clone(), r);
            }
        }
        out
    }
}
