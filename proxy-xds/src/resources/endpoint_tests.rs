use envoy_types::pb::{
    envoy::config::{
        core::v3::{address::Address as Addr, Address, Locality, SocketAddress},
        endpoint::v3::{Endpoint, LocalityLbEndpoints},
    },
    google::protobuf::UInt32Value,
};

use super::*;

fn at(ip: &str, port: u32, status: HealthStatus) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
            address: Some(Address {
                address: Some(Addr::SocketAddress(SocketAddress {
                    address: ip.into(),
                    port_specifier: Some(PortSpecifier::PortValue(port)),
                    ..SocketAddress::default()
                })),
            }),
            ..Endpoint::default()
        })),
        health_status: status as i32,
        ..LbEndpoint::default()
    }
}

fn group(priority: u32, eps: Vec<LbEndpoint>) -> LocalityLbEndpoints {
    LocalityLbEndpoints {
        locality: Some(Locality {
            region: "r".into(),
            zone: "z1".into(),
            sub_zone: String::new(),
        }),
        lb_endpoints: eps,
        priority,
        ..LocalityLbEndpoints::default()
    }
}

fn cla(groups: Vec<LocalityLbEndpoints>) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: "c".into(),
        endpoints: groups,
        ..Default::default()
    }
}

fn addrs(eps: &[EndpointConfig]) -> Vec<String> {
    eps.iter().map(|e| e.address().to_string()).collect()
}

#[test]
fn unhealthy_and_draining_are_left_out_and_labels_kept() {
    let mut weighted = at("10.0.0.4", 80, HealthStatus::Healthy);
    weighted.load_balancing_weight = Some(UInt32Value { value: 7 });
    let eps = load_assignment(&cla(vec![group(
        0,
        vec![
            at("10.0.0.1", 80, HealthStatus::Unknown),
            at("10.0.0.2", 80, HealthStatus::Unhealthy),
            at("10.0.0.3", 80, HealthStatus::Draining),
            weighted,
        ],
    )]))
    .unwrap();
    assert_eq!(addrs(&eps), ["10.0.0.1:80", "10.0.0.4:80"]);
    assert_eq!(eps[1].weight().get(), 7);
    assert_eq!(
        eps[0].metadata().get("zone").map(String::as_str),
        Some("z1")
    );
    assert!(!eps[0].metadata().contains_key("sub_zone"));
}

#[test]
fn the_best_priority_that_can_serve_takes_the_traffic() {
    let eps = load_assignment(&cla(vec![
        group(1, vec![at("10.0.1.1", 80, HealthStatus::Healthy)]),
        group(0, vec![at("10.0.0.1", 80, HealthStatus::Unhealthy)]),
    ]))
    .unwrap();
    assert_eq!(addrs(&eps), ["10.0.1.1:80"]);
    let eps = load_assignment(&cla(vec![group(
        0,
        vec![
            at("10.0.0.1", 80, HealthStatus::Degraded),
            at("10.0.0.2", 80, HealthStatus::Healthy),
        ],
    )]))
    .unwrap();
    assert_eq!(addrs(&eps), ["10.0.0.2:80"]);
    assert!(load_assignment(&cla(vec![])).unwrap().is_empty());
}

#[test]
fn refusals_name_the_field() {
    let e = load_assignment(&cla(vec![group(
        0,
        vec![at("10.0.0.1", 0, HealthStatus::Healthy)],
    )]))
    .unwrap_err();
    assert_eq!(e.to_string(), "cluster_load_assignment \"c\": endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value: 0 is not a port");
    let e = load_assignment(&cla(vec![group(
        0,
        vec![
            at("10.0.0.1", 80, HealthStatus::Healthy),
            at("10.0.0.1", 80, HealthStatus::Healthy),
        ],
    )]))
    .unwrap_err();
    assert_eq!(e.path, "endpoints[0].lb_endpoints[1]");
    let mut c = cla(vec![group(
        0,
        vec![at("10.0.0.1", 80, HealthStatus::Healthy)],
    )]);
    c.named_endpoints.insert("x".into(), Endpoint::default());
    assert_eq!(load_assignment(&c).unwrap_err().path, "named_endpoints");
}
