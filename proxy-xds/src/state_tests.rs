use envoy_types::pb::{
    envoy::config::{
        cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType},
        endpoint::v3::LocalityLbEndpoints,
    },
    google::protobuf::Any,
};
use prost::Message;

use super::*;
use crate::resources::{LISTENER_TYPE, ROUTE_TYPE};

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

fn listener_response(version: &str, rds_name: &str) -> DiscoveryResponse {
    use envoy_types::pb::envoy::{
        config::listener::v3::{filter, Filter, FilterChain, Listener},
        extensions::filters::network::http_connection_manager::v3::{
            http_connection_manager::RouteSpecifier, HttpConnectionManager, HttpFilter, Rds,
        },
    };
    let hcm = HttpConnectionManager {
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: None,
            route_config_name: rds_name.into(),
        })),
        http_filters: vec![HttpFilter {
            name: resources::ROUTER_NAME.into(),
            ..HttpFilter::default()
        }],
        ..HttpConnectionManager::default()
    };
    let l = Listener {
        name: "web".into(),
        address: Some(envoy_types::pb::envoy::config::core::v3::Address {
            address: Some(
                envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(
                    envoy_types::pb::envoy::config::core::v3::SocketAddress {
                        address: "127.0.0.1".into(),
                        port_specifier: Some(
                            envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(0),
                        ),
                        ..Default::default()
                    },
                ),
            ),
        }),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: resources::HCM_NAME.into(),
                config_type: Some(filter::ConfigType::TypedConfig(Any {
                    type_url: resources::HCM_TYPE.into(),
                    value: hcm.encode_to_vec(),
                })),
            }],
            ..FilterChain::default()
        }],
        ..Listener::default()
    };
    DiscoveryResponse {
        type_url: LISTENER_TYPE.into(),
        version_info: version.into(),
        nonce: format!("l{version}"),
        resources: vec![Any {
            type_url: LISTENER_TYPE.into(),
            value: l.encode_to_vec(),
        }],
        ..Default::default()
    }
}

fn routes_response(version: &str, name: &str, cluster: &str) -> DiscoveryResponse {
    use envoy_types::pb::envoy::config::route::v3::{
        route::Action, route_action::ClusterSpecifier, route_match::PathSpecifier, Route,
        RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
    };
    let rc = RouteConfiguration {
        name: name.into(),
        virtual_hosts: vec![VirtualHost {
            name: "all".into(),
            domains: vec!["*".into()],
            routes: vec![Route {
                r#match: Some(RouteMatch {
                    path_specifier: Some(PathSpecifier::Prefix("/".into())),
                    ..Default::default()
                }),
                action: Some(Action::Route(RouteAction {
                    cluster_specifier: Some(ClusterSpecifier::Cluster(cluster.into())),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    DiscoveryResponse {
        type_url: ROUTE_TYPE.into(),
        version_info: version.into(),
        nonce: format!("r{version}"),
        resources: vec![Any {
            type_url: ROUTE_TYPE.into(),
            value: rc.encode_to_vec(),
        }],
        ..Default::default()
    }
}

#[test]
fn listeners_wait_for_their_routes_and_keep_the_serving_version() {
    let mut s = AdsState::new(true);
    let open = s.open(Node::default());
    let types: Vec<&str> = open.iter().map(|r| r.type_url.as_str()).collect();
    assert_eq!(types, [CLUSTER_TYPE, LISTENER_TYPE]);
    assert!(
        AdsState::default()
            .prepare(&listener_response("1", "r1"), &base())
            .is_err(),
        "LDS off"
    );

    let resp = listener_response("1", "r1");
    let next = s.prepare(&resp, &base()).unwrap();
    assert_eq!(
        next.config(&base()).listeners.len(),
        1,
        "not before its routes"
    );
    let out = s.accept(next, &resp);
    assert_eq!(
        (out[0].type_url.as_str(), out[0].resource_names.clone()),
        (ROUTE_TYPE, vec!["r1".to_owned()])
    );
    assert_eq!(
        (out[1].type_url.as_str(), out[1].version_info.as_str()),
        (LISTENER_TYPE, "1")
    );

    let resp = routes_response("1", "r1", "ghost");
    let next = s.prepare(&resp, &base()).unwrap();
    let config = next.config(&base());
    assert_eq!(config.listeners[1].name, "web");
    assert!(
        config.clusters.iter().any(|c| c.name == "ghost"),
        "a placeholder"
    );
    s.accept(next, &resp);

    // New routes by another name: the serving version stays until they arrive.
    let resp = listener_response("2", "r2");
    let next = s.prepare(&resp, &base()).unwrap();
    assert!(
        !next.routes.contains_key("r1"),
        "unsubscribed routes are dropped"
    );
    let config = next.config(&base());
    assert_eq!(
        config.listeners[1].virtual_hosts[0].routes[0].cluster,
        "ghost"
    );
    s.accept(next, &resp);
    let next = s
        .prepare(&routes_response("2", "r2", "other"), &base())
        .unwrap();
    assert_eq!(
        next.config(&base()).listeners[1].virtual_hosts[0].routes[0].cluster,
        "other"
    );

    // A new stream asks for both again.
    let open = s.open(Node::default());
    let types: Vec<&str> = open.iter().map(|r| r.type_url.as_str()).collect();
    assert_eq!(types, [CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE]);
}
