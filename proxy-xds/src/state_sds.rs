//! Secrets (SDS) in the accepted state: their request and their validation. The
//! names the bootstrap lists and those the accepted clusters' transports name are
//! asked for; as for EDS, a response need not carry all of them, and those absent
//! keep their last value.

use std::collections::{BTreeSet, HashSet};

use envoy_types::pb::envoy::{
    extensions::transport_sockets::tls::v3::Secret,
    service::discovery::v3::{DiscoveryRequest, DiscoveryResponse},
};

use super::{AdsState, Versions};
use crate::{
    resources::{self, SECRET_TYPE},
    Refusal,
};

impl AdsState {
    /// Asks for the secrets `names` too (SDS over the same stream).
    pub(crate) fn with_secrets(mut self, names: &[String]) -> Self {
        self.sds_bootstrap = names.iter().cloned().collect::<BTreeSet<_>>();
        self.sds_names.clone_from(&self.sds_bootstrap);
        self
    }

    /// Asks for the secrets of the bootstrap and those the clusters and listeners
    /// name, and drops the others.
    pub(crate) fn resubscribe_secrets(&mut self) {
        self.sds_names = self
            .sds_bootstrap
            .iter()
            .chain(self.clusters.values().flat_map(|c| &c.secrets))
            .chain(self.listeners.values().flat_map(|l| &l.secrets))
            .cloned()
            .collect();
        let names = &self.sds_names;
        self.secrets.retain(|name, _| names.contains(name));
    }

    pub(super) fn sds_request(&self) -> DiscoveryRequest {
        DiscoveryRequest {
            type_url: SECRET_TYPE.into(),
            version_info: self.sds.version.clone(),
            response_nonce: self.sds.nonce.clone(),
            resource_names: self.sds_names.iter().cloned().collect(),
            ..DiscoveryRequest::default()
        }
    }

    /// Takes an SDS response: every secret translated; those not asked for are
    /// ignored, those absent keep their last value.
    pub(super) fn prepare_secrets(&mut self, resp: &DiscoveryResponse) -> Result<(), Refusal> {
        let mut names = HashSet::new();
        for (i, any) in resp.resources.iter().enumerate() {
            let at = format!("resources[{i}]");
            let s: Secret = resources::decode(any, SECRET_TYPE, &at)?;
            if !names.insert(s.name.clone()) {
                return Err(Refusal::new(
                    format!("secret {:?}", s.name),
                    "name",
                    "appears twice in the response",
                ));
            }
            let secret = resources::secret(&s)?;
            if self.sds_names.contains(&s.name) {
                self.secrets.insert(s.name, secret);
            }
        }
        self.sds = Versions {
            version: resp.version_info.clone(),
            nonce: resp.nonce.clone(),
        };
        Ok(())
    }

    /// The types asked for, for a refusal of another: `CDS, EDS and SDS are`.
    pub(crate) fn subscribed_types(&self) -> String {
        let mut types = vec!["CDS", "EDS"];
        if self.lds_enabled {
            types.extend(["LDS", "RDS"]);
        }
        if !self.sds_names.is_empty() {
            types.push("SDS");
        }
        let (last, rest) = types.split_last().map_or(("", &[][..]), |(l, r)| (*l, r));
        format!("{} and {last} are", rest.join(", "))
    }
}
