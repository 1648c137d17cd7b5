//! The sidecar binary with an `xds` section against an in-process ADS control plane:
//! its static route names cluster `web`, which only the control plane defines (CDS
//! then EDS, pointing at a test upstream); requests reach the upstream once both are
//! ACKed, and keep reaching it after a SIGHUP reload of the file. `--validate` checks
//! the section, naming the field.

mod common;

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::*;
use envoy_types::pb::envoy::{
    config::{
        cluster::v3::{
            cluster::{ClusterDiscoveryType, DiscoveryType, EdsClusterConfig},
            Cluster,
        },
        core::v3::{
            address, config_source::ConfigSourceSpecifier, socket_address::PortSpecifier, Address,
            AggregatedConfigSource, ConfigSource, SocketAddress,
        },
        endpoint::v3::{
            lb_endpoint::HostIdentifier, ClusterLoadAssignment, Endpoint, LbEndpoint,
            LocalityLbEndpoints,
        },
    },
    service::discovery::v3::{
        aggregated_discovery_service_server::{
            AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
        },
        DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
    },
};
use futures_util::Stream;
use http::StatusCode;
use prost::{Message, Name};
use proxy_test_support::{
    client, eventually_async, free_addr, temp::TempDir, with_timeout, Upstream,
};
use proxy_xds::resources::{CLUSTER_TYPE, ENDPOINT_TYPE};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

const LIMIT: Duration = Duration::from_secs(60);

// === an ADS control plane driven by the test ===

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

/// A control plane on 127.0.0.1 (stopped with the test's runtime).
struct ControlPlane {
    addr: SocketAddr,
    requests: mpsc::UnboundedReceiver<DiscoveryRequest>,
    current: Arc<Mutex<Option<Sender>>>,
}

impl ControlPlane {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local address");
        let (requests_tx, requests) = mpsc::unbounded_channel();
        let current = Arc::new(Mutex::new(None));
        let ads = Ads {
            requests: requests_tx,
            current: current.clone(),
        };
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .serve_with_incoming_shutdown(
                    AggregatedDiscoveryServiceServer::new(ads),
                    tonic::transport::server::TcpIncoming::from(listener),
                    std::future::pending::<()>(),
                )
                .await;
        });
        Self {
            addr,
            requests,
            current,
        }
    }

    /// The next request from the sidecar (20 s at most).
    async fn request(&mut self) -> DiscoveryRequest {
        tokio::time::timeout(Duration::from_secs(20), self.requests.recv())
            .await
            .expect("a request from the sidecar within 20s")
            .expect("the control plane is running")
    }

    /// Pushes a response on the current stream.
    fn push(
        &self,
        type_url: &str,
        version: &str,
        resources: Vec<envoy_types::pb::google::protobuf::Any>,
    ) {
        let current = self.current.lock().expect("lock");
        let tx = current.as_ref().expect("a stream is open");
        let resp = DiscoveryResponse {
            type_url: type_url.into(),
            version_info: version.into(),
            nonce: format!("{type_url}-{version}"),
            resources,
            ..DiscoveryResponse::default()
        };
        tx.send(Ok(resp)).expect("the stream is open");
    }
}

fn any<M: Message + Name>(m: &M) -> envoy_types::pb::google::protobuf::Any {
    envoy_types::pb::google::protobuf::Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

/// An EDS cluster over ADS, as Istio and go-control-plane send it.
fn eds_cluster(name: &str) -> Cluster {
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
        ..Cluster::default()
    }
}

/// The endpoints of `name`: `addr` alone.
fn assignment(name: &str, addr: SocketAddr) -> ClusterLoadAssignment {
    let endpoint = LbEndpoint {
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
    };
    ClusterLoadAssignment {
        cluster_name: name.into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: vec![endpoint],
            ..LocalityLbEndpoints::default()
        }],
        ..ClusterLoadAssignment::default()
    }
}

// === the sidecar ===

/// A listener `main` on `listen` whose one route names cluster `web`, no static
/// cluster, and the `xds` section for the control plane at `cp`.
fn config(listen: SocketAddr, admin: SocketAddr, cp: SocketAddr) -> String {
    format!(
        "admin: {{address: \"{admin}\"}}\n\
         listeners:\n  - name: main\n    address: \"{listen}\"\n    virtual_hosts:\n      \
         - {{name: all, domains: [\"*\"], routes: [{route}]}}\n\
         xds:\n  servers: [\"{cp}\"]\n  node: {{id: sidecar-test, cluster: app}}\n  \
         backoff: {{initial: 50ms, max: 200ms}}\n",
        route = route("to-web", "/", "web", ""),
    )
}

/// Whether `GET /` through the sidecar answers 200 from the upstream `web`.
async fn reaches_upstream(listen: SocketAddr) -> bool {
    eventually_async(Duration::from_secs(10), || async move {
        let r = client::get(listen, "/", &[]).await;
        r.status == StatusCode::OK && r.text() == "web"
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_from_the_control_plane_carry_traffic() {
    with_timeout(LIMIT, async {
        let upstream = Upstream::named("web");
        let mut cp = ControlPlane::start().await;
        let (listen, admin) = (free_addr(), free_addr());
        let sidecar = Sidecar::start(&config(listen, admin, cp.addr), admin).await;

        // Until the control plane sends `web`, its placeholder answers 503.
        let before = client::get(listen, "/", &[]).await;
        assert_eq!(
            before.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            sidecar.logs()
        );

        let first = cp.request().await;
        assert_eq!(first.type_url, CLUSTER_TYPE);
        assert_eq!(
            first.node.as_ref().map(|n| n.id.as_str()),
            Some("sidecar-test")
        );
        cp.push(CLUSTER_TYPE, "1", vec![any(&eds_cluster("web"))]);
        let sub = cp.request().await;
        assert_eq!(
            (sub.type_url.as_str(), sub.resource_names.as_slice()),
            (ENDPOINT_TYPE, &["web".to_owned()][..])
        );
        let ack = cp.request().await;
        assert_eq!(
            (
                ack.type_url.as_str(),
                ack.version_info.as_str(),
                ack.response_nonce.as_str()
            ),
            (CLUSTER_TYPE, "1", format!("{CLUSTER_TYPE}-1").as_str()),
        );
        assert!(
            ack.error_detail.is_none(),
            "CDS ACK, not NACK: {:?}",
            ack.error_detail
        );

        cp.push(
            ENDPOINT_TYPE,
            "1",
            vec![any(&assignment("web", upstream.addr))],
        );
        let ack = cp.request().await;
        assert_eq!(
            (
                ack.type_url.as_str(),
                ack.version_info.as_str(),
                ack.response_nonce.as_str()
            ),
            (ENDPOINT_TYPE, "1", format!("{ENDPOINT_TYPE}-1").as_str()),
        );
        assert!(
            ack.error_detail.is_none(),
            "EDS ACK, not NACK: {:?}",
            ack.error_detail
        );
        assert!(
            reaches_upstream(listen).await,
            "no answer from web; logs:\n{}",
            sidecar.logs()
        );

        // SIGHUP re-reads the file, whose route names `web` without defining it: the
        // reload is refused and the running config, with the xDS cluster, stays.
        sidecar.signal("HUP");
        let logs = || sidecar.logs();
        assert!(
            eventually_async(Duration::from_secs(10), || async move {
                logs().contains("config reload refused (SIGHUP)")
            })
            .await,
            "no reload outcome logged:\n{}",
            sidecar.logs()
        );
        assert!(
            reaches_upstream(listen).await,
            "xDS cluster lost after SIGHUP:\n{}",
            sidecar.logs()
        );
    })
    .await;
}

#[tokio::test]
async fn validate_checks_the_xds_section() {
    with_timeout(LIMIT, async {
        let dir = TempDir::new("sidecar-xds-validate");
        let path = dir.join("config.yaml");
        let cp: SocketAddr = "127.0.0.1:18000".parse().expect("address");
        let good = config(free_addr(), free_addr(), cp);
        std::fs::write(&path, &good).expect("write config");
        let out = run_sidecar(
            &["--config".as_ref(), path.as_os_str(), "--validate".as_ref()],
            LIMIT,
        )
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "a route may name an xDS-only cluster: {stderr}"
        );

        std::fs::write(
            &path,
            good.replace("127.0.0.1:18000", "http://127.0.0.1:18000"),
        )
        .expect("write config");
        let out = run_sidecar(
            &["--config".as_ref(), path.as_os_str(), "--validate".as_ref()],
            LIMIT,
        )
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains("xds.servers[0]: "),
            "the error names the field: {stderr}"
        );

        std::fs::write(&path, good.replace("node: {", "nodes: {")).expect("write config");
        let out = run_sidecar(
            &["--config".as_ref(), path.as_os_str(), "--validate".as_ref()],
            LIMIT,
        )
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains("xds"),
            "the error names the section: {stderr}"
        );
    })
    .await;
}
