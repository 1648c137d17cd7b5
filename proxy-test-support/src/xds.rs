//! An in-process xDS control plane (tonic ADS server on `127.0.0.1`) that a test
//! drives by hand: it reads each request the client sends and pushes responses on
//! the current stream, state of the world or delta; and builders of the Envoy
//! resources it pushes ([`resources`]). Feature `xds`.
//!
//! ```no_run
//! use proxy_test_support::xds::{resources::{cds, eds_cluster}, ControlPlane, CLUSTER_TYPE};
//! # async fn demo() {
//! let mut cp = ControlPlane::start().await;
//! // ... point an xDS client at cp.addr ...
//! let first = cp.request_of(CLUSTER_TYPE).await;
//! assert!(first.node.is_some());
//! let ack = cp.push_acked(cds("1", &[eds_cluster("web")])).await;
//! assert_eq!(ack.version_info, "1");
//! # }
//! ```

mod per_type;
pub mod resources;
mod tls;

use std::{
    collections::HashMap,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use envoy_types::pb::envoy::service::discovery::v3::{
    aggregated_discovery_service_server::AggregatedDiscoveryService, DeltaDiscoveryRequest,
    DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use futures_util::Stream;
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status, Streaming};

/// The type URL of clusters (CDS).
pub const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// The type URL of endpoints (EDS).
pub const ENDPOINT_TYPE: &str =
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
/// The type URL of listeners (LDS).
pub const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// The type URL of route configurations (RDS).
pub const ROUTE_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// The type URL of secrets (SDS).
pub const SECRET_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// How long [`ControlPlane::request`] waits for the client.
const REQUEST_WAIT: Duration = Duration::from_secs(10);

type Outbound<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;
type Current<T> = Arc<Mutex<Option<mpsc::UnboundedSender<Result<T, Status>>>>>;
/// The current per-type streams, by type URL.
type Typed<T> = Arc<Mutex<HashMap<String, Current<T>>>>;

#[derive(Clone)]
struct Ads {
    requests: mpsc::UnboundedSender<DiscoveryRequest>,
    delta_requests: mpsc::UnboundedSender<DeltaDiscoveryRequest>,
    current: Current<DiscoveryResponse>,
    current_delta: Current<DeltaDiscoveryResponse>,
    typed: Typed<DiscoveryResponse>,
    typed_delta: Typed<DeltaDiscoveryResponse>,
}

impl Ads {
    fn typed_slot(&self, type_url: &str) -> Current<DiscoveryResponse> {
        slot(&self.typed, type_url)
    }

    fn typed_delta_slot(&self, type_url: &str) -> Current<DeltaDiscoveryResponse> {
        slot(&self.typed_delta, type_url)
    }
}

/// The slot of the per-type stream of `type_url`.
fn slot<T>(typed: &Typed<T>, type_url: &str) -> Current<T> {
    let mut map = typed.lock().expect("lock");
    Arc::clone(map.entry(type_url.to_owned()).or_default())
}

/// The sender of the open per-type stream of `type_url`, if any.
fn typed_sender<T>(
    typed: &Typed<T>,
    type_url: &str,
) -> Option<mpsc::UnboundedSender<Result<T, Status>>> {
    let map = typed.lock().expect("lock");
    let slot = map.get(type_url)?;
    let sender = slot.lock().expect("lock").clone();
    sender
}

/// Makes `current` the stream's sender, forwards what the client sends to
/// `requests`, and returns the stream of responses.
fn serve<Req, Resp>(
    inbound: Streaming<Req>,
    requests: mpsc::UnboundedSender<Req>,
    current: &Current<Resp>,
) -> Outbound<Resp>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    Streaming<Req>: Send,
{
    let (tx, rx) = mpsc::unbounded_channel();
    *current.lock().expect("lock") = Some(tx);
    let mut inbound = inbound;
    tokio::spawn(async move {
        while let Ok(Some(r)) = inbound.message().await {
            let _ = requests.send(r);
        }
    });
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|r| (r, rx))
    }))
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream = Outbound<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = Outbound<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let out = serve(request.into_inner(), self.requests.clone(), &self.current);
        Ok(Response::new(out))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let out = serve(
            request.into_inner(),
            self.delta_requests.clone(),
            &self.current_delta,
        );
        Ok(Response::new(out))
    }
}

/// A control plane on 127.0.0.1, serving both variants of ADS and of the per-type
/// services (CDS, EDS, LDS, RDS, SDS each on its own stream); the requests of every
/// stream come in one sequence, and a push goes to the per-type stream of its type
/// when one is open, else to the ADS stream. Stopped with [`ControlPlane::stop`] or
/// with the test's runtime.
pub struct ControlPlane {
    /// Where it listens.
    pub addr: SocketAddr,
    requests: mpsc::UnboundedReceiver<DiscoveryRequest>,
    delta_requests: mpsc::UnboundedReceiver<DeltaDiscoveryRequest>,
    current: Current<DiscoveryResponse>,
    current_delta: Current<DeltaDiscoveryResponse>,
    typed: Typed<DiscoveryResponse>,
    typed_delta: Typed<DeltaDiscoveryResponse>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ControlPlane {
    /// Starts on a free port of 127.0.0.1.
    pub async fn start() -> Self {
        Self::start_at(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on `addr` (a restarted control plane takes its old address).
    ///
    /// # Panics
    /// When `addr` cannot be bound.
    pub async fn start_at(addr: SocketAddr) -> Self {
        Self::start_on(addr, None).await
    }

    /// Starts on a free port of 127.0.0.1, serving TLS with `config` (offer ALPN
    /// `h2`; require client certificates there for mTLS).
    pub async fn start_tls(config: Arc<rustls::ServerConfig>) -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), Some(config)).await
    }

    async fn start_on(addr: SocketAddr, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let (requests_tx, requests) = mpsc::unbounded_channel();
        let (delta_tx, delta_requests) = mpsc::unbounded_channel();
        let (current, current_delta) = (Current::default(), Current::default());
        let (typed, typed_delta) = (Typed::default(), Typed::default());
        let ads = Ads {
            requests: requests_tx,
            delta_requests: delta_tx,
            current: Arc::clone(&current),
            current_delta: Arc::clone(&current_delta),
            typed: Arc::clone(&typed),
            typed_delta: Arc::clone(&typed_delta),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let services = per_type::Services::new(&ads);
        let shutdown = async {
            let _ = stopped.await;
        };
        let task = tokio::spawn(async move {
            let server = tonic::transport::Server::builder();
            let _ = match tls {
                None => {
                    let incoming = tonic::transport::server::TcpIncoming::from(listener);
                    server
                        .serve_with_incoming_shutdown(services, incoming, shutdown)
                        .await
                }
                Some(config) => {
                    let incoming = tls::incoming(listener, config);
                    server
                        .serve_with_incoming_shutdown(services, incoming, shutdown)
                        .await
                }
            };
        });
        Self {
            addr,
            requests,
            delta_requests,
            current,
            current_delta,
            typed,
            typed_delta,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The next state-of-the-world request from the client (10 s at most).
    ///
    /// # Panics
    /// When none comes in time.
    pub async fn request(&mut self) -> DiscoveryRequest {
        tokio::time::timeout(REQUEST_WAIT, self.requests.recv())
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

    /// Pushes a response on the per-type stream of its type, else on the current
    /// state-of-the-world ADS stream.
    ///
    /// # Panics
    /// When no stream is open.
    pub fn push(&self, resp: DiscoveryResponse) {
        let tx = typed_sender(&self.typed, &resp.type_url)
            .or_else(|| self.current.lock().expect("lock").clone())
            .expect("a stream is open");
        tx.send(Ok(resp)).expect("the stream is open");
    }

    /// Pushes `resp` and returns the client's answer to it: the next request of its
    /// type that carries its nonce (subscriptions sent before it are skipped).
    pub async fn push_answered(&mut self, resp: DiscoveryResponse) -> DiscoveryRequest {
        let (type_url, nonce) = (resp.type_url.clone(), resp.nonce.clone());
        self.push(resp);
        loop {
            let r = self.request_of(&type_url).await;
            if r.response_nonce == nonce {
                return r;
            }
        }
    }

    /// Pushes `resp` and returns its ACK.
    ///
    /// # Panics
    /// When the client NACKs it, or ACKs another version.
    pub async fn push_acked(&mut self, resp: DiscoveryResponse) -> DiscoveryRequest {
        let version = resp.version_info.clone();
        let ack = self.push_answered(resp).await;
        assert!(ack.error_detail.is_none(), "NACK: {:?}", ack.error_detail);
        assert_eq!(ack.version_info, version, "the ACK carries the version");
        ack
    }

    /// Pushes `resp` and returns the NACK's request and its error message.
    ///
    /// # Panics
    /// When the client ACKs it.
    pub async fn push_nacked(&mut self, resp: DiscoveryResponse) -> (DiscoveryRequest, String) {
        let nack = self.push_answered(resp).await;
        let message = nack
            .error_detail
            .as_ref()
            .map(|d| d.message.clone())
            .expect("a NACK (error_detail)");
        (nack, message)
    }

    /// The next delta request from the client (10 s at most).
    ///
    /// # Panics
    /// When none comes in time.
    pub async fn delta_request(&mut self) -> DeltaDiscoveryRequest {
        tokio::time::timeout(REQUEST_WAIT, self.delta_requests.recv())
            .await
            .expect("a delta request from the client within 10s")
            .expect("the control plane is running")
    }

    /// The next delta request of `type_url`, skipping others.
    pub async fn delta_request_of(&mut self, type_url: &str) -> DeltaDiscoveryRequest {
        loop {
            let r = self.delta_request().await;
            if r.type_url == type_url {
                return r;
            }
        }
    }

    /// Pushes a response on the per-type delta stream of its type, else on the
    /// current delta ADS stream.
    ///
    /// # Panics
    /// When no delta stream is open.
    pub fn push_delta(&self, resp: DeltaDiscoveryResponse) {
        let tx = typed_sender(&self.typed_delta, &resp.type_url)
            .or_else(|| self.current_delta.lock().expect("lock").clone())
            .expect("a delta stream is open");
        tx.send(Ok(resp)).expect("the delta stream is open");
    }

    /// Pushes `resp` on the delta stream and returns the client's answer to it (the
    /// next delta request of its type with its nonce).
    pub async fn push_delta_answered(
        &mut self,
        resp: DeltaDiscoveryResponse,
    ) -> DeltaDiscoveryRequest {
        let (type_url, nonce) = (resp.type_url.clone(), resp.nonce.clone());
        self.push_delta(resp);
        loop {
            let r = self.delta_request_of(&type_url).await;
            if r.response_nonce == nonce {
                return r;
            }
        }
    }

    /// Ends the streams and stops the server.
    pub async fn stop(mut self) {
        self.current.lock().expect("lock").take();
        self.current_delta.lock().expect("lock").take();
        self.typed.lock().expect("lock").clear();
        self.typed_delta.lock().expect("lock").clear();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(REQUEST_WAIT, task).await;
        }
    }
}
