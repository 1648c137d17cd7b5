//! Entry points for the fuzz targets in `proxy-xds/fuzz` (not a stable API): each
//! feeds arbitrary bytes from a "control plane" through what the client does with
//! them, and must never panic.

use std::sync::OnceLock;

use envoy_types::pb::{
    envoy::{
        config::{
            cluster::v3::Cluster, endpoint::v3::ClusterLoadAssignment, listener::v3::Listener,
            route::v3::RouteConfiguration,
        },
        extensions::transport_sockets::tls::v3::Secret,
        service::discovery::v3::{DeltaDiscoveryResponse, DiscoveryResponse},
    },
    google::protobuf::Any,
};
use prost::Message;
use proxy_core::config::Config;

use crate::{
    delta::DeltaState,
    resources::{self, CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE},
    state::AdsState,
};

/// The static config the responses are added to: a listener whose route names
/// cluster `app`, and a static cluster `static`.
fn base() -> Option<&'static Config> {
    static BASE: OnceLock<Option<Config>> = OnceLock::new();
    BASE.get_or_init(|| {
        Config::from_yaml(
            "listeners: [{name: main, address: 127.0.0.1:0, virtual_hosts: [{name: all, domains: ['*'], routes: [{match: {}, cluster: app}]}]}]\nclusters: [{name: static, endpoints: []}]",
        )
        .ok()
    })
    .as_ref()
}

/// One resource: the first byte picks its type (cluster, endpoints, listener,
/// routes, secret), the rest is its protobuf bytes; decoded and translated.
pub fn resource(data: &[u8]) {
    let Some((kind, value)) = data.split_first() else {
        return;
    };
    let value = value.to_vec();
    match kind % 5 {
        0 => {
            let any = Any {
                type_url: CLUSTER_TYPE.into(),
                value,
            };
            if let Ok(c) = resources::decode::<Cluster>(&any, CLUSTER_TYPE, "r") {
                let _ = resources::cluster(&c);
            }
        }
        1 => {
            let any = Any {
                type_url: ENDPOINT_TYPE.into(),
                value,
            };
            if let Ok(c) = resources::decode::<ClusterLoadAssignment>(&any, ENDPOINT_TYPE, "r") {
                let _ = resources::load_assignment(&c);
            }
        }
        2 => {
            let any = Any {
                type_url: LISTENER_TYPE.into(),
                value,
            };
            if let Ok(l) = resources::decode::<Listener>(&any, LISTENER_TYPE, "r") {
                let _ = resources::listener(&l);
            }
        }
        3 => {
            let any = Any {
                type_url: ROUTE_TYPE.into(),
                value,
            };
            if let Ok(r) = resources::decode::<RouteConfiguration>(&any, ROUTE_TYPE, "r") {
                let _ = resources::route_configuration(&r);
            }
        }
        _ => {
            let any = Any {
                type_url: SECRET_TYPE.into(),
                value,
            };
            if let Ok(s) = resources::decode::<Secret>(&any, SECRET_TYPE, "r") {
                let _ = resources::secret(&s);
            }
        }
    }
}

/// A stream of state-of-the-world responses (length-delimited
/// `DiscoveryResponse`s), each validated, then accepted (and its config built) or
/// NACKed, by a client asking for every type (listeners and secret `web` too).
/// Returns how many were accepted.
pub fn sotw_responses(data: &[u8]) -> usize {
    let Some(base) = base() else { return 0 };
    let mut state = AdsState::new(true).with_secrets(&["web".to_owned()]);
    let _ = state.open(Default::default());
    let mut buf = data;
    let mut accepted = 0;
    while let Ok(resp) = DiscoveryResponse::decode_length_delimited(&mut buf) {
        match state.prepare(&resp, base) {
            Ok(next) => {
                let _ = next.config(base);
                let _ = state.accept(next, &resp);
                accepted += 1;
            }
            Err(refusal) => {
                let _ = state.reject(&resp, &refusal);
            }
        }
    }
    let _ = state.open(Default::default());
    accepted
}

/// The same for delta responses (length-delimited `DeltaDiscoveryResponse`s).
/// Returns how many were accepted.
pub fn delta_responses(data: &[u8]) -> usize {
    let Some(base) = base() else { return 0 };
    let mut state = DeltaState::new(true).with_secrets(&["web".to_owned()]);
    let _ = state.open(Default::default());
    let mut buf = data;
    let mut accepted = 0;
    while let Ok(resp) = DeltaDiscoveryResponse::decode_length_delimited(&mut buf) {
        match state.prepare(&resp, base) {
            Ok(next) => {
                let _ = next.ads.config(base);
                let _ = state.accept(next, &resp);
                accepted += 1;
            }
            Err(refusal) => {
                let _ = state.reject(&resp, &refusal);
            }
        }
    }
    let _ = state.open(Default::default());
    accepted
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::service::discovery::v3::Resource;

    use super::*;

    #[test]
    fn the_entry_points_take_valid_and_broken_input() {
        let cluster = Cluster {
            name: "app".into(),
            ..Cluster::default()
        };
        let any = Any {
            type_url: CLUSTER_TYPE.into(),
            value: cluster.encode_to_vec(),
        };
        let mut one = vec![0];
        one.extend(cluster.encode_to_vec());
        resource(&one);
        resource(&[]);
        resource(&[4, 0xff, 0xff]);

        let sotw = DiscoveryResponse {
            type_url: CLUSTER_TYPE.into(),
            version_info: "1".into(),
            nonce: "n".into(),
            resources: vec![any.clone()],
            ..DiscoveryResponse::default()
        };
        let mut stream = sotw.encode_length_delimited_to_vec();
        stream.extend([0x05, 0xff]);
        assert_eq!(sotw_responses(&stream), 1);

        let delta = DeltaDiscoveryResponse {
            type_url: CLUSTER_TYPE.into(),
            nonce: "n".into(),
            resources: vec![Resource {
                name: "app".into(),
                resource: Some(any),
                ..Resource::default()
            }],
            removed_resources: vec!["gone".into()],
            ..DeltaDiscoveryResponse::default()
        };
        let mut stream = delta.encode_length_delimited_to_vec();
        stream.extend(delta.encode_length_delimited_to_vec());
        assert_eq!(delta_responses(&stream), 2, "an update of the same cluster");
        assert_eq!(delta_responses(&[0xff; 8]), 0);
    }

    #[test]
    fn the_fuzz_seeds_are_taken_as_a_client_would() {
        // Every type of the control plane's snapshot, its cluster list with one
        // cluster refused (outlier_detection): that response is NACKed, the rest
        // accepted (endpoints not asked for yet are ignored).
        let sotw = include_bytes!("../fuzz/seeds/sotw_responses/all-types");
        assert_eq!(sotw_responses(sotw), 4);
        let delta = include_bytes!("../fuzz/seeds/delta_responses/all-types-then-removal");
        assert_eq!(delta_responses(delta), 5);
        for seed in [
            &include_bytes!("../fuzz/seeds/resource/cds-app")[..],
            include_bytes!("../fuzz/seeds/resource/lds-web"),
            include_bytes!("../fuzz/seeds/resource/rds-r"),
        ] {
            resource(seed);
        }
    }
}
