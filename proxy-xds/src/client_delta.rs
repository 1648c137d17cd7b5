//! The delta (incremental) ADS stream of the client: `DeltaAggregatedResources`,
//! each response validated and applied through the same path as state of the world
//! (`client_drive.rs`).

use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use proxy_core::{config::Config, Server};
use tokio::sync::mpsc;

use super::{drive::AdsLink, receiver_stream, XdsClient};
use crate::{delta::DeltaState, StreamError};

impl XdsClient {
    /// One delta stream, until it ends. `got` is set once a response arrived.
    pub(super) async fn delta_stream(
        &self,
        address: &str,
        state: &mut Arc<DeltaState>,
        server: &Server,
        last_applied: &mut Option<Arc<Config>>,
        got: &mut bool,
    ) -> Result<(), StreamError> {
        let mut client = self.connect(address).await?;
        let (tx, rx) = mpsc::channel::<DeltaDiscoveryRequest>(64);
        for req in state.open(self.config.node()) {
            let _ = tx.send(req).await;
        }
        let inbound = client
            .delta_aggregated_resources(receiver_stream(rx))
            .await?
            .into_inner();
        self.opened(address);
        let mut link = AdsLink::<DeltaState> { tx, inbound };
        self.drive(&mut link, state, server, last_applied, got)
            .await
    }
}
