//! Builders of the Envoy resources and responses a test control plane pushes, in
//! the shapes Istio and go-control-plane send: EDS clusters over ADS, one-locality
//! assignments, listeners whose HTTP connection manager takes its routes over RDS,
//! prefix and weighted routes.

use std::net::SocketAddr;

use envoy_types::pb::{
    envoy::{
        config::{
            cluster::v3::{
                cluster::{ClusterDiscoveryType, DiscoveryType, EdsClusterConfig},
                Cluster,
            },
            core::v3::{
                address, config_source::ConfigSourceSpecifier, socket_address::PortSpecifier,
                Address, AggregatedConfigSource, ConfigSource, SocketAddress,
            },
            endpoint::v3::{
                lb_endpoint::HostIdentifier, ClusterLoadAssignment, Endpoint, LbEndpoint,
                LocalityLbEndpoints,
            },
            listener::v3::{filter, Filter, FilterChain, Listener},
            route::v3::{
                route::Action, route_action::ClusterSpecifier, route_match::PathSpecifier,
                weighted_cluster::ClusterWeight, Route, RouteAction, RouteConfiguration,
                RouteMatch, VirtualHost, WeightedCluster,
            },
        },
        extensions::filters::{
            http::router::v3::Router,
            network::http_connection_manager::v3::{
                http_connection_manager::RouteSpecifier, http_filter, HttpConnectionManager,
                HttpFilter, Rds,
            },
        },
        service::discovery::v3::{DeltaDiscoveryResponse, DiscoveryResponse, Resource},
    },
    google::protobuf::{Any, UInt32Value},
};
use prost::{Message, Name};

use super::{CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE};

/// The name of the HTTP connection manager network filter.
pub const HCM_NAME: &str = "envoy.filters.network.http_connection_manager";
/// The name of the router HTTP filter.
pub const ROUTER_NAME: &str = "envoy.filters.http.router";

/// `m` packed as an `Any` of its type URL.
pub fn any<M: Message + Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

/// A state-of-the-world response.
pub fn response(
    type_url: &str,
    version: &str,
    nonce: &str,
    resources: Vec<Any>,
) -> DiscoveryResponse {
    DiscoveryResponse {
        type_url: type_url.into(),
        version_info: version.into(),
        nonce: nonce.into(),
        resources,
        ..DiscoveryResponse::default()
    }
}

/// A CDS response of `clusters`.
pub fn cds(version: &str, clusters: &[Cluster]) -> DiscoveryResponse {
    response(
        CLUSTER_TYPE,
        version,
        &format!("cds-{version}"),
        clusters.iter().map(any).collect(),
    )
}

/// An EDS response of `assignments`.
pub fn eds(version: &str, assignments: &[ClusterLoadAssignment]) -> DiscoveryResponse {
    response(
        ENDPOINT_TYPE,
        version,
        &format!("eds-{version}"),
        assignments.iter().map(any).collect(),
    )
}

/// An EDS cluster over ADS, as Istio and go-control-plane send it.
pub fn eds_cluster(name: &str) -> Cluster {
    Cluster {
        name: name.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig {
            eds_config: Some(ConfigSource {
                config_source_specifier: Some(ConfigSourceSpecifier::Ads(
                    AggregatedConfigSource {},
                )),
                resource_api_version: 2,
                ..ConfigSource::default()
            }),
            service_name: String::new(),
        }),
        connect_timeout: Some(envoy_types::pb::google::protobuf::Duration {
            seconds: 1,
            nanos: 0,
        }),
        ..Cluster::default()
    }
}

/// An endpoint at `addr`.
pub fn lb_endpoint(addr: SocketAddr) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: addr.ip().to_string(),
                    port_specifier: Some(PortSpecifier::PortValue(u32::from(addr.port()))),
                    ..SocketAddress::default()
                })),
            }),
            ..Endpoint::default()
        })),
        ..LbEndpoint::default()
    }
}

/// An assignment of `addrs` (one locality, priority 0).
pub fn cla(name: &str, addrs: &[SocketAddr]) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: name.into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: addrs.iter().copied().map(lb_endpoint).collect(),
            ..LocalityLbEndpoints::default()
        }],
        ..ClusterLoadAssignment::default()
    }
}

/// A STATIC cluster of `addrs` (no EDS step).
pub fn static_cluster(name: &str, addrs: &[SocketAddr]) -> Cluster {
    Cluster {
        name: name.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        load_assignment: Some(cla(name, addrs)),
        ..Cluster::default()
    }
}

/// An LDS response of `listeners`.
pub fn lds(version: &str, listeners: &[Listener]) -> DiscoveryResponse {
    response(
        LISTENER_TYPE,
        version,
        &format!("lds-{version}"),
        listeners.iter().map(any).collect(),
    )
}

/// An RDS response of `configs`.
pub fn rds(version: &str, configs: &[RouteConfiguration]) -> DiscoveryResponse {
    response(
        ROUTE_TYPE,
        version,
        &format!("rds-{version}"),
        configs.iter().map(any).collect(),
    )
}

/// The router HTTP filter, as control planes send it.
pub fn router() -> HttpFilter {
    HttpFilter {
        name: ROUTER_NAME.into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(
            any(&Router::default()),
        )),
        ..HttpFilter::default()
    }
}

/// A listener at `addr` whose HTTP connection manager has `routes` and `filters`.
pub fn http_listener(
    name: &str,
    addr: SocketAddr,
    routes: RouteSpecifier,
    filters: Vec<HttpFilter>,
) -> Listener {
    let hcm = HttpConnectionManager {
        stat_prefix: name.into(),
        route_specifier: Some(routes),
        http_filters: filters,
        ..HttpConnectionManager::default()
    };
    Listener {
        name: name.into(),
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: addr.ip().to_string(),
                port_specifier: Some(PortSpecifier::PortValue(u32::from(addr.port()))),
                ..SocketAddress::default()
            })),
        }),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: HCM_NAME.into(),
                config_type: Some(filter::ConfigType::TypedConfig(any(&hcm))),
            }],
            ..FilterChain::default()
        }],
        ..Listener::default()
    }
}

/// A listener at `addr` with the router whose routes come over RDS as `routes`.
pub fn rds_listener(name: &str, addr: SocketAddr, routes: &str) -> Listener {
    http_listener(
        name,
        addr,
        RouteSpecifier::Rds(Rds {
            config_source: Some(ConfigSource {
                config_source_specifier: Some(ConfigSourceSpecifier::Ads(
                    AggregatedConfigSource {},
                )),
                resource_api_version: 2,
                ..ConfigSource::default()
            }),
            route_config_name: routes.into(),
        }),
        vec![router()],
    )
}

/// A route sending paths with `prefix` to `cluster`.
pub fn prefix_route(prefix: &str, cluster: &str) -> Route {
    Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(PathSpecifier::Prefix(prefix.into())),
            ..RouteMatch::default()
        }),
        action: Some(Action::Route(RouteAction {
            cluster_specifier: Some(ClusterSpecifier::Cluster(cluster.into())),
            ..RouteAction::default()
        })),
        ..Route::default()
    }
}

/// A route sending every path to `clusters` by weight.
pub fn weighted_route(clusters: &[(&str, u32)]) -> Route {
    let mut r = prefix_route("/", "unused");
    if let Some(Action::Route(a)) = &mut r.action {
        a.cluster_specifier = Some(ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: clusters
                .iter()
                .map(|(name, weight)| ClusterWeight {
                    name: (*name).into(),
                    weight: Some(UInt32Value { value: *weight }),
                    ..ClusterWeight::default()
                })
                .collect(),
            ..WeightedCluster::default()
        }));
    }
    r
}

/// A route configuration `name` of one catch-all virtual host with `routes`.
pub fn route_config(name: &str, routes: Vec<Route>) -> RouteConfiguration {
    RouteConfiguration {
        name: name.into(),
        virtual_hosts: vec![VirtualHost {
            name: format!("{name}-all"),
            domains: vec!["*".into()],
            routes,
            ..VirtualHost::default()
        }],
        ..RouteConfiguration::default()
    }
}

/// A delta resource: `any` named `name` at `version`.
pub fn delta_resource(name: &str, version: &str, any: Any) -> Resource {
    Resource {
        name: name.into(),
        version: version.into(),
        resource: Some(any),
        ..Resource::default()
    }
}

/// A delta response of `type_url`: `resources` added or updated, `removed` gone;
/// `system_version_info` is `version`.
pub fn delta(
    type_url: &str,
    version: &str,
    nonce: &str,
    resources: Vec<Resource>,
    removed: &[&str],
) -> DeltaDiscoveryResponse {
    DeltaDiscoveryResponse {
        type_url: type_url.into(),
        system_version_info: version.into(),
        nonce: nonce.into(),
        resources,
        removed_resources: removed.iter().map(|s| (*s).to_owned()).collect(),
        ..DeltaDiscoveryResponse::default()
    }
}
