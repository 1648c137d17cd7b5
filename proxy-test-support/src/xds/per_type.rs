//! The per-type discovery services (CDS, EDS, LDS, RDS, SDS on streams of their
//! own) for clients that do not use ADS: each stream is kept by its type URL, so
//! a push of that type goes to it.

use envoy_types::pb::envoy::service::{
    cluster::v3::cluster_discovery_service_server::{
        ClusterDiscoveryService, ClusterDiscoveryServiceServer,
    },
    discovery::v3::{
        DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
    },
    endpoint::v3::endpoint_discovery_service_server::{
        EndpointDiscoveryService, EndpointDiscoveryServiceServer,
    },
    listener::v3::listener_discovery_service_server::{
        ListenerDiscoveryService, ListenerDiscoveryServiceServer,
    },
    route::v3::route_discovery_service_server::{
        RouteDiscoveryService, RouteDiscoveryServiceServer,
    },
    secret::v3::secret_discovery_service_server::{
        SecretDiscoveryService, SecretDiscoveryServiceServer,
    },
};
use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;
use tonic::{body::Body, Request, Response, Status, Streaming};
use tower::{util::BoxCloneSyncService, Service, ServiceExt};

use super::{
    serve, Ads, Outbound, CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE,
};

/// Implements one per-type service on [`Ads`]: its streams are kept under
/// `$type_url`; fetches are not served.
macro_rules! per_type {
    ($trait:ident, $type_url:expr, $stream:ident, $delta:ident, $fetch:ident, $s:ident, $d:ident) => {
        #[tonic::async_trait]
        impl $trait for Ads {
            type $s = Outbound<DiscoveryResponse>;
            type $d = Outbound<DeltaDiscoveryResponse>;

            async fn $stream(
                &self,
                request: Request<Streaming<DiscoveryRequest>>,
            ) -> Result<Response<Self::$s>, Status> {
                let slot = self.typed_slot($type_url);
                let out = serve(request.into_inner(), self.requests.clone(), &slot);
                Ok(Response::new(out))
            }

            async fn $delta(
                &self,
                request: Request<Streaming<DeltaDiscoveryRequest>>,
            ) -> Result<Response<Self::$d>, Status> {
                let slot = self.typed_delta_slot($type_url);
                let out = serve(request.into_inner(), self.delta_requests.clone(), &slot);
                Ok(Response::new(out))
            }

            async fn $fetch(
                &self,
                _request: Request<DiscoveryRequest>,
            ) -> Result<Response<DiscoveryResponse>, Status> {
                Err(Status::unimplemented("fetch is not served"))
            }
        }
    };
}

per_type!(
    ClusterDiscoveryService,
    CLUSTER_TYPE,
    stream_clusters,
    delta_clusters,
    fetch_clusters,
    StreamClustersStream,
    DeltaClustersStream
);
per_type!(
    EndpointDiscoveryService,
    ENDPOINT_TYPE,
    stream_endpoints,
    delta_endpoints,
    fetch_endpoints,
    StreamEndpointsStream,
    DeltaEndpointsStream
);
per_type!(
    ListenerDiscoveryService,
    LISTENER_TYPE,
    stream_listeners,
    delta_listeners,
    fetch_listeners,
    StreamListenersStream,
    DeltaListenersStream
);
per_type!(
    RouteDiscoveryService,
    ROUTE_TYPE,
    stream_routes,
    delta_routes,
    fetch_routes,
    StreamRoutesStream,
    DeltaRoutesStream
);
per_type!(
    SecretDiscoveryService,
    SECRET_TYPE,
    stream_secrets,
    delta_secrets,
    fetch_secrets,
    StreamSecretsStream,
    DeltaSecretsStream
);

type Grpc = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Infallible>;

/// The ADS service and the five per-type services on one server, chosen by the
/// request path's service name (what tonic's router does, without its axum
/// dependency).
#[derive(Clone)]
pub(super) struct Services {
    routes: Vec<(&'static str, Grpc)>,
}

impl Services {
    pub(super) fn new(ads: &Ads) -> Self {
        let routes: Vec<(&'static str, Grpc)> = vec![
            (
                "/envoy.service.discovery.v3.AggregatedDiscoveryService/",
                BoxCloneSyncService::new(AggregatedDiscoveryServiceServer::new(ads.clone())),
            ),
            (
                "/envoy.service.cluster.v3.ClusterDiscoveryService/",
                BoxCloneSyncService::new(ClusterDiscoveryServiceServer::new(ads.clone())),
            ),
            (
                "/envoy.service.endpoint.v3.EndpointDiscoveryService/",
                BoxCloneSyncService::new(EndpointDiscoveryServiceServer::new(ads.clone())),
            ),
            (
                "/envoy.service.listener.v3.ListenerDiscoveryService/",
                BoxCloneSyncService::new(ListenerDiscoveryServiceServer::new(ads.clone())),
            ),
            (
                "/envoy.service.route.v3.RouteDiscoveryService/",
                BoxCloneSyncService::new(RouteDiscoveryServiceServer::new(ads.clone())),
            ),
            (
                "/envoy.service.secret.v3.SecretDiscoveryService/",
                BoxCloneSyncService::new(SecretDiscoveryServiceServer::new(ads.clone())),
            ),
        ];
        Self { routes }
    }
}

impl Service<http::Request<Body>> for Services {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let path = req.uri().path().to_owned();
        let found = self
            .routes
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix))
            .map(|(_, svc)| svc.clone());
        Box::pin(async move {
            match found {
                Some(svc) => svc.oneshot(req).await,
                None => Ok(Status::unimplemented(path).into_http()),
            }
        })
    }
}
