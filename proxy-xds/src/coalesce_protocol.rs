//! The two variants of the protocol as the coalescing sees them ([`Protocol`]):
//! state of the world ([`AdsState`]) and delta ([`DeltaState`]), their messages
//! and the steps of their state machines.

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use proxy_core::config::Config;

use crate::{delta::DeltaState, state::AdsState, Refusal};

/// One variant of the protocol (state of the world, delta): its messages and the
/// steps of its state machine the coalescing needs.
pub(crate) trait Protocol: Clone + Send + Sync + 'static {
    /// A request to the control plane.
    type Req: Send + 'static;
    /// A response from the control plane.
    type Resp: Send + 'static;

    /// The response's type URL.
    fn type_url(resp: &Self::Resp) -> &str;
    /// The response's nonce.
    fn nonce(resp: &Self::Resp) -> &str;
    /// The version the response carries, for logs.
    fn version(resp: &Self::Resp) -> &str;
    /// The response's size, encoded.
    fn size(resp: &Self::Resp) -> usize;
    /// Validates `resp` on top of `self`: the state after it, or the refusal.
    fn prepare(&self, resp: &Self::Resp, base: &Config) -> Result<Self, Refusal>;
    /// Takes the candidate `next` of a response of `type_url` with `nonce`: the
    /// state after it and the requests that follow (subscription changes, ACK).
    fn advance(&self, next: Self, type_url: &str, nonce: &str) -> (Self, Vec<Self::Req>);
    /// The NACK of the response of `type_url` with `nonce`, and the state after
    /// it when the NACK changes the state (state of the world remembers nonces).
    fn nack(&self, type_url: &str, nonce: &str, refusal: &Refusal) -> (Option<Self>, Self::Req);
    /// [`Protocol::nack`] on a state of one's own.
    fn nack_in_place(&mut self, type_url: &str, nonce: &str, refusal: &Refusal) -> Self::Req;
    /// The translated state.
    fn ads(&self) -> &AdsState;
}

impl Protocol for AdsState {
    type Req = DiscoveryRequest;
    type Resp = DiscoveryResponse;

    fn type_url(resp: &DiscoveryResponse) -> &str {
        &resp.type_url
    }
    fn nonce(resp: &DiscoveryResponse) -> &str {
        &resp.nonce
    }
    fn version(resp: &DiscoveryResponse) -> &str {
        &resp.version_info
    }
    fn size(resp: &DiscoveryResponse) -> usize {
        prost::Message::encoded_len(resp)
    }
    fn prepare(&self, resp: &DiscoveryResponse, base: &Config) -> Result<Self, Refusal> {
        AdsState::prepare(self, resp, base)
    }
    fn advance(&self, next: Self, type_url: &str, _nonce: &str) -> (Self, Vec<DiscoveryRequest>) {
        AdsState::advance(self, next, type_url)
    }
    fn nack(
        &self,
        type_url: &str,
        nonce: &str,
        refusal: &Refusal,
    ) -> (Option<Self>, DiscoveryRequest) {
        let mut state = self.clone();
        let req = AdsState::nack(&mut state, type_url, nonce, refusal);
        (Some(state), req)
    }
    fn nack_in_place(
        &mut self,
        type_url: &str,
        nonce: &str,
        refusal: &Refusal,
    ) -> DiscoveryRequest {
        AdsState::nack(self, type_url, nonce, refusal)
    }
    fn ads(&self) -> &AdsState {
        self
    }
}

impl Protocol for DeltaState {
    type Req = DeltaDiscoveryRequest;
    type Resp = DeltaDiscoveryResponse;

    fn type_url(resp: &DeltaDiscoveryResponse) -> &str {
        &resp.type_url
    }
    fn nonce(resp: &DeltaDiscoveryResponse) -> &str {
        &resp.nonce
    }
    fn version(resp: &DeltaDiscoveryResponse) -> &str {
        &resp.system_version_info
    }
    fn size(resp: &DeltaDiscoveryResponse) -> usize {
        prost::Message::encoded_len(resp)
    }
    fn prepare(&self, resp: &DeltaDiscoveryResponse, base: &Config) -> Result<Self, Refusal> {
        DeltaState::prepare(self, resp, base)
    }
    fn advance(
        &self,
        next: Self,
        type_url: &str,
        nonce: &str,
    ) -> (Self, Vec<DeltaDiscoveryRequest>) {
        DeltaState::advance(self, next, type_url, nonce)
    }
    fn nack(
        &self,
        type_url: &str,
        nonce: &str,
        refusal: &Refusal,
    ) -> (Option<Self>, DeltaDiscoveryRequest) {
        (None, DeltaState::nack(self, type_url, nonce, refusal))
    }
    fn nack_in_place(
        &mut self,
        type_url: &str,
        nonce: &str,
        refusal: &Refusal,
    ) -> DeltaDiscoveryRequest {
        DeltaState::nack(self, type_url, nonce, refusal)
    }
    fn ads(&self) -> &AdsState {
        &self.ads
    }
}
