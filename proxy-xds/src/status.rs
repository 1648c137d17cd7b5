//! What the client has done so far ([`XdsStatus`]), per type too
//! ([`TypeStatus`]): for readiness checks, admin pages and tests.

use std::collections::BTreeMap;

use crate::{
    resources::{CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE},
    state::AdsState,
    Refusal,
};

/// What the client has done so far, for readiness checks, admin pages and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct XdsStatus {
    /// Whether a stream to the control plane is open.
    pub connected: bool,
    /// Sessions (streams, or sets of per-type streams) opened so far.
    pub streams: u64,
    /// The accepted CDS version (empty until the first).
    pub cluster_version: String,
    /// The accepted EDS version (empty until the first).
    pub endpoint_version: String,
    /// The accepted LDS version (empty until the first).
    pub listener_version: String,
    /// The accepted RDS version (empty until the first).
    pub route_version: String,
    /// The accepted SDS version (empty until the first).
    pub secret_version: String,
    /// Configs applied to the server so far.
    pub applied: u64,
    /// The error detail of the last NACK.
    pub last_nack: Option<String>,
    /// Per type: `clusters`, `endpoints`, `listeners`, `routes`, `secrets` (a type
    /// appears once a response of it came).
    pub types: BTreeMap<&'static str, TypeStatus>,
}

/// One resource type's state: its accepted version and resources, its ACKs and
/// NACKs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TypeStatus {
    /// The accepted version (`version_info`, or delta's `system_version_info`).
    pub version: String,
    /// Resources accepted and held.
    pub resources: usize,
    /// The names of the resources held, sorted.
    pub names: Vec<String>,
    /// Responses accepted (ACKed).
    pub acks: u64,
    /// Responses refused (NACKed).
    pub nacks: u64,
    /// The error detail of this type's last NACK.
    pub last_nack: Option<String>,
    /// Responses received (accepted, refused, or not answered yet).
    pub received: u64,
    /// Accepted responses that went live as the newest of their type.
    pub applied: u64,
    /// Accepted responses that went live together with a newer response of
    /// their type, in one apply: superseded before they were applied on their own.
    pub coalesced: u64,
}

/// The status name of a type URL.
fn name(type_url: &str) -> Option<&'static str> {
    match type_url {
        CLUSTER_TYPE => Some("clusters"),
        ENDPOINT_TYPE => Some("endpoints"),
        LISTENER_TYPE => Some("listeners"),
        ROUTE_TYPE => Some("routes"),
        SECRET_TYPE => Some("secrets"),
        _ => None,
    }
}

impl XdsStatus {
    /// Records a response of `type_url` received.
    pub(crate) fn received(&mut self, type_url: &str) {
        if let Some(name) = name(type_url) {
            self.types.entry(name).or_default().received += 1;
        }
    }

    /// Records an accepted response of `type_url` as live, `state` being the
    /// live state; `coalesced` when a newer response of its type went live with it
    /// (that one publishes the versions and names: only counted here).
    pub(crate) fn accepted(&mut self, state: &AdsState, type_url: &str, coalesced: bool) {
        if coalesced {
            if let Some(name) = name(type_url) {
                let t = self.types.entry(name).or_default();
                t.acks += 1;
                t.coalesced += 1;
            }
            return;
        }
        self.cluster_version.clone_from(&state.cds.version);
        self.endpoint_version.clone_from(&state.eds.version);
        self.listener_version.clone_from(&state.lds.version);
        self.route_version.clone_from(&state.rds.version);
        self.secret_version.clone_from(&state.sds.version);
        let Some(name) = name(type_url) else { return };
        let (version, names): (_, Vec<String>) = match name {
            "clusters" => (&state.cds.version, state.clusters.keys().cloned().collect()),
            "endpoints" => (
                &state.eds.version,
                state.endpoints.keys().cloned().collect(),
            ),
            "listeners" => (
                &state.lds.version,
                state.listeners.keys().cloned().collect(),
            ),
            "routes" => (&state.rds.version, state.routes.keys().cloned().collect()),
            _ => (&state.sds.version, state.secrets.keys().cloned().collect()),
        };
        let t = self.types.entry(name).or_default();
        t.version.clone_from(version);
        t.resources = names.len();
        t.names = names;
        t.acks += 1;
        t.applied += 1;
    }

    /// Records a refused response of `type_url`.
    pub(crate) fn rejected(&mut self, type_url: &str, refusal: &Refusal) {
        let detail = refusal.to_string();
        if let Some(name) = name(type_url) {
            let t = self.types.entry(name).or_default();
            t.nacks += 1;
            t.last_nack = Some(detail.clone());
        }
        self.last_nack = Some(detail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_are_counted_received_applied_coalesced_and_nacked() {
        let mut state = AdsState::default();
        state.eds.version = "3".into();
        state.endpoints.insert("a".into(), Vec::new());
        let mut s = XdsStatus::default();
        for _ in 0..4 {
            s.received(ENDPOINT_TYPE);
        }
        s.accepted(&state, ENDPOINT_TYPE, true);
        s.rejected(ENDPOINT_TYPE, &Refusal::new("x", "port_value", "bad"));
        s.accepted(&state, ENDPOINT_TYPE, true);
        s.accepted(&state, ENDPOINT_TYPE, false);
        let t = &s.types["endpoints"];
        assert_eq!(
            (t.received, t.applied, t.coalesced, t.acks, t.nacks),
            (4, 1, 2, 3, 1)
        );
        assert_eq!(t.received, t.applied + t.coalesced + t.nacks);
        assert_eq!(
            (t.version.as_str(), t.names.clone()),
            ("3", vec!["a".to_owned()])
        );
        assert_eq!(s.endpoint_version, "3");
        assert_eq!(t.last_nack.as_deref(), Some("x: port_value: bad"));
    }
}
