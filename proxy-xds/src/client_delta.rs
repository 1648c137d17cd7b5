//! The delta (incremental) ADS stream of the client: `DeltaAggregatedResources`,
//! each response validated and applied through the same path as state of the world.

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use proxy_core::{config::Config, Server};
use tokio::sync::mpsc;

use super::{receiver_stream, XdsClient};
use crate::{delta::DeltaState, StreamError};

impl XdsClient {
    /// One delta stream, until it ends. `got` is set once a response arrived.
    pub(super) async fn delta_stream(
        &self,
        address: &str,
        state: &mut DeltaState,
        server: &Server,
        last_applied: &mut Option<Config>,
        got: &mut bool,
    ) -> Result<(), StreamError> {
        let mut client = self.connect(address).await?;
        let (tx, rx) = mpsc::channel::<DeltaDiscoveryRequest>(64);
        for req in state.open(self.config.node()) {
            let _ = tx.send(req).await;
        }
        let mut inbound = client
            .delta_aggregated_resources(receiver_stream(rx))
            .await?
            .into_inner();
        self.opened(address);
        while let Some(resp) = inbound.message().await? {
            *got = true;
            for req in self.handle_delta(state, &resp, server, last_applied).await {
                if tx.send(req).await.is_err() {
                    return Err(StreamError::Closed);
                }
            }
        }
        Err(StreamError::Closed)
    }

    /// Validates, applies and answers one delta response.
    pub(super) async fn handle_delta(
        &self,
        state: &mut DeltaState,
        resp: &DeltaDiscoveryResponse,
        server: &Server,
        last_applied: &mut Option<Config>,
    ) -> Vec<DeltaDiscoveryRequest> {
        let outcome = match state.prepare(resp, &self.base) {
            Err(refusal) => Err(refusal),
            Ok(next) => self
                .commit(&state.ads, &next.ads, server, last_applied)
                .await
                .map(|()| next),
        };
        let (type_url, version) = (&resp.type_url, &resp.system_version_info);
        let (updated, removed) = (resp.resources.len(), resp.removed_resources.len());
        match outcome {
            Ok(next) => {
                tracing::info!(%type_url, %version, updated, removed, "xds delta accepted");
                let out = state.accept(next, resp);
                self.accepted(&state.ads, &resp.type_url);
                out
            }
            Err(refusal) => {
                tracing::warn!(%type_url, %version, %refusal, "xds delta rejected");
                self.rejected(&resp.type_url, &refusal);
                vec![state.reject(resp, &refusal)]
            }
        }
    }
}
