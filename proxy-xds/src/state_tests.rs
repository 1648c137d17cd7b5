use envoy_types::pb::{
    envoy::config::{
        cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType},
        endpoint::v3::LocalityLbEndpoints,
    },
    google::protobuf::Any,
};
use prost::Message;

use super::*;

fn base() -> Config {
    proxy_core::config::from_yaml(
        "listeners: [{name: l, address: 127.0.0.1:0, virtual_hosts: [{name: v, domains: ['*'], routes: [{match: {}, cluster: app}, {match: {}, cluster: other}]}]}]\nclusters: [{name: other, endpoints: []}]",
    )
    .unwrap()
}

fn cds(version: &str, names: &[&str]) -> DiscoveryResponse {
    let resources = names
        .iter()
        .map(|n| Any {
            type_url: CLUSTER_TYPE.into(),
            value: Cluster {
                name: (*n).into(),
                cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
                ..Cluster::default()
            }
            .encode_to_vec(),
        })
        .collect();
    DiscoveryResponse {
        type_url: CLUSTER_TYPE.into(),
        version_info: version.into(),
        nonce: format!("n{version}"),
        resources,
        ..Default::default()
    }
}

fn eds(version: &str, name: &str) -> DiscoveryResponse {
    let cla = ClusterLoadAssignment {
        cluster_name: name.into(),
        endpoints: vec![LocalityLbEndpoints::default()],
        ..Default::default()
    };
    DiscoveryResponse {
        type_url: ENDPOINT_TYPE.into(),
        version_info: version.into(),
        nonce: format!("e{version}"),
        resources: vec![Any {
            type_url: ENDPOINT_TYPE.into(),
            value: cla.encode_to_vec(),
        }],
        ..Default::default()
    }
}

#[test]
fn placeholders_until_the_control_plane_speaks() {
    let config = AdsState::default().config(&base());
    let names: Vec<_> = config.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["other", "app"]);
}

#[test]
fn accept_subscribes_then_acks_and_reject_keeps_the_version() {
    let mut s = AdsState::default();
    let open = s.open(Node::default());
    assert_eq!(open.len(), 1);
    assert!(open[0].node.is_some());

    let resp = cds("1", &["app"]);
    let next = s.prepare(&resp, &base()).unwrap();
    let out = s.accept(next, &resp);
    assert_eq!(out.len(), 2);
    assert_eq!(
        (out[0].type_url.as_str(), out[0].resource_names.clone()),
        (ENDPOINT_TYPE, vec!["app".to_owned()])
    );
    assert_eq!(
        (out[1].version_info.as_str(), out[1].response_nonce.as_str()),
        ("1", "n1")
    );

    // The same subscription again: only the ACK.
    let resp = cds("2", &["app"]);
    let next = s.prepare(&resp, &base()).unwrap();
    assert_eq!(s.accept(next, &resp).len(), 1);

    // Unasked-for endpoints are ignored; asked-for ones kept.
    let resp = eds("1", "app");
    let next = s.prepare(&resp, &base()).unwrap();
    assert!(next.endpoints.contains_key("app"));
    s.accept(next, &resp);
    let ignored = s.prepare(&eds("2", "nobody"), &base()).unwrap();
    assert!(!ignored.endpoints.contains_key("nobody"));

    // A static name is refused; the NACK carries the accepted version.
    let resp = cds("3", &["other"]);
    let refusal = s.prepare(&resp, &base()).unwrap_err();
    assert_eq!(
        refusal.to_string(),
        "cluster \"other\": name: a static cluster has this name"
    );
    let nack = s.reject(&resp, &refusal);
    assert_eq!(
        (nack.version_info.as_str(), nack.response_nonce.as_str()),
        ("2", "n3")
    );

    // Removing the cluster drops its endpoints and unsubscribes.
    let resp = cds("4", &[]);
    let next = s.prepare(&resp, &base()).unwrap();
    assert!(next.endpoints.is_empty());
    let out = s.accept(next, &resp);
    assert_eq!(out[0].type_url, ENDPOINT_TYPE);
    assert!(out[0].resource_names.is_empty());

    // A new stream: the versions stay, the nonces go, and the node is on the first.
    let open = s.open(Node::default());
    assert_eq!(
        (
            open[0].version_info.as_str(),
            open[0].response_nonce.as_str()
        ),
        ("4", "")
    );
}

#[test]
fn duplicate_resources_are_refused() {
    let s = AdsState::default();
    let r = s.prepare(&cds("1", &["a", "a"]), &base()).unwrap_err();
    assert_eq!(
        r.to_string(),
        "cluster \"a\": name: appears twice in the response"
    );
}
