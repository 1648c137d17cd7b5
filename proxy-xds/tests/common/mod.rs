//! An in-process ADS management server (tonic) that the test drives by hand, and
//! builders of the Envoy resources it pushes.

#![allow(dead_code, unreachable_pub)]

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

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
        service::discovery::v3::{
            aggregated_discovery_service_server::{
                AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
            },
            DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
        },
    },
    google::protobuf::{Any, UInt32Value},
};
use futures_util::Stream;
use prost::{Message, Name};
use proxy_xds::resources::{
    CLUSTER_TYPE, ENDPOINT_TYPE, HCM_NAME, LISTENER_TYPE, ROUTER_NAME, ROUTE_TYPE,
};
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status, Streaming};

type Outbound = Pin<Box<dyn Stream<Item = Result<DiscoveryResponse, Status>> + Send>>;
type DeltaOutbound = Pin<Box<dyn Stream<Item = Result<DeltaDiscoveryResponse, Status>> + Send>>;
type Sender = mpsc::UnboundedSender<Result<DiscoveryResponse, Status>>;

struct Ads {
    requests: mpsc::UnboundedSender<DiscoveryRequest>,
    current: Arc<Mutex<Option<Sender>>>,
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream = Outbound;
    type DeltaAggregatedResourcesStream = DeltaOutbound;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Outbound>, Status> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.current.lock().expect("lock") = Some(tx);
        let mut inbound = request.into_inner();
        let requests = self.requests.clone();
        tokio::spawn(async move {
            while let Ok(Some(r)) = inbound.message().await {
                let _ = requests.send(r);
            }
        });
        let out =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|r| (r, rx)) },
            );
        Ok(Response::new(Box::pin(out)))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaOutbound>, Status> {
        Err(Status::unimplemented("delta"))
    }
}

/// A control plane on 127.0.0.1: the test reads each request the client sends and
/// pushes responses on the current stream.
pub struct ControlPlane {
    pub addr: SocketAddr,
    requests: mpsc::UnboundedReceiver<DiscoveryRequest>,
    current: Arc<Mutex<Option<Sender>>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ControlPlane {
    pub async fn start() -> Self {
        Self::start_at("127.0.0.1:0".parse().expect("address")).await
    }

    pub async fn start_at(addr: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let (requests_tx, requests) = mpsc::unbounded_channel();
        let current = Arc::new(Mutex::new(None));
        let ads = Ads {
            requests: requests_tx,
            current: current.clone(),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .serve_with_incoming_shutdown(
                    AggregatedDiscoveryServiceServer::new(ads),
                    tonic::transport::server::TcpIncoming::from(listener),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await;
        });
        Self {
            addr,
            requests,
            current,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The next request from the client (10 s at most).
    pub async fn request(&mut self) -> DiscoveryRequest {
        tokio::time::timeout(Duration::from_secs(10), self.requests.recv())
            .await
            .expect("a request from the client within 10s")
            .expect("the control plane is running")
    }

    /// The next request of `type_url`, skipping others.
    pub async fn request_of(&mut self, type_url: &str) -> DiscoveryRequest {
        loop {
            let r = self.request().await;
            if r.type_url == type_url {
                return r;
            }
        }
    }

    /// Pushes a response on the current stream.
    pub fn push(&self, resp: DiscoveryResponse) {
        let current = self.current.lock().expect("lock");
        let tx = current.as_ref().expect("a stream is open");
        tx.send(Ok(resp)).expect("the stream is open");
    }

    /// Ends the stream and stops the server.
    pub async fn stop(mut self) {
        self.current.lock().expect("lock").take();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

pub fn any<M: Message + Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

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
