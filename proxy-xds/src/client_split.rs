//! A stream per type (`streams: per_type`), for control planes that do not serve
//! ADS: CDS, EDS, LDS, RDS and SDS each on its own service, all on one connection.
//! The state machines are those of ADS; each request goes to the stream of its
//! type, opened with its first request (which carries the node), and the answer
//! to a response of a type not asked for goes back on the stream it came on. The
//! session ends, to be reopened whole after the back-off, when any stream ends.

use std::{collections::HashMap, pin::Pin, sync::Arc};

use envoy_types::pb::envoy::{
    config::core::v3::Node,
    service::{
        cluster::v3::cluster_discovery_service_client::ClusterDiscoveryServiceClient,
        discovery::v3::{
            DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
        },
        endpoint::v3::endpoint_discovery_service_client::EndpointDiscoveryServiceClient,
        listener::v3::listener_discovery_service_client::ListenerDiscoveryServiceClient,
        route::v3::route_discovery_service_client::RouteDiscoveryServiceClient,
        secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient,
    },
};
use futures_util::{
    future::BoxFuture,
    stream::{self, SelectAll},
    Stream, StreamExt,
};
use proxy_core::{config::Config, Server};
use tokio::sync::mpsc;
use tonic::{transport::Channel, Status, Streaming};

use super::{
    coalesce::{Origin, Protocol},
    drive::{Link, Received},
    receiver_stream, XdsClient,
};
use crate::{
    delta::DeltaState,
    resources::{CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE},
    state::AdsState,
    StreamError,
};

/// What one stream yields: its type, then a response, or `None` once it ended.
type Tagged<T> = (&'static str, Option<Result<T, Status>>);

/// The open streams of one session: a sender per type and their merged responses.
struct PerType<Req, Resp> {
    senders: HashMap<&'static str, mpsc::Sender<Req>>,
    inbound: SelectAll<Pin<Box<dyn Stream<Item = Tagged<Resp>> + Send>>>,
}

/// A request of either variant.
pub(super) trait Request: Send + 'static {
    fn type_url(&self) -> &str;
    fn set_node(&mut self, node: Node);
}

impl Request for DiscoveryRequest {
    fn type_url(&self) -> &str {
        &self.type_url
    }
    fn set_node(&mut self, node: Node) {
        self.node = Some(node);
    }
}

impl Request for DeltaDiscoveryRequest {
    fn type_url(&self) -> &str {
        &self.type_url
    }
    fn set_node(&mut self, node: Node) {
        self.node = Some(node);
    }
}

/// The type URL of a type that has a service of its own.
fn known(type_url: &str) -> Option<&'static str> {
    [
        CLUSTER_TYPE,
        ENDPOINT_TYPE,
        LISTENER_TYPE,
        ROUTE_TYPE,
        SECRET_TYPE,
    ]
    .into_iter()
    .find(|t| *t == type_url)
}

impl<Req: Request, Resp: Send + 'static> PerType<Req, Resp> {
    fn new() -> Self {
        Self {
            senders: HashMap::new(),
            inbound: SelectAll::new(),
        }
    }

    /// Where `req` goes: the stream of its type, or of `origin` (the stream of the
    /// response it answers) for a type without a service. `None`: nowhere.
    fn target(req: &Req, origin: Option<&'static str>) -> Option<&'static str> {
        known(req.type_url()).or(origin)
    }

    /// Sends `req` on the stream of `type_url`; when that stream is not open yet,
    /// returns the requests to open it with (`req`, with the node) instead.
    async fn send(
        &mut self,
        type_url: &'static str,
        mut req: Req,
        node: &Node,
    ) -> Result<Option<mpsc::Receiver<Req>>, StreamError> {
        if let Some(tx) = self.senders.get(type_url) {
            tx.send(req).await.map_err(|_| StreamError::Closed)?;
            return Ok(None);
        }
        req.set_node(node.clone());
        let (tx, rx) = mpsc::channel(64);
        tx.send(req).await.map_err(|_| StreamError::Closed)?;
        self.senders.insert(type_url, tx);
        Ok(Some(rx))
    }

    /// Sends `req` where [`Self::target`] says; when that opens a new stream, returns
    /// its type and the request stream to open the service's stream with.
    async fn route(
        &mut self,
        req: Req,
        node: &Node,
        origin: Option<&'static str>,
    ) -> Result<Option<(&'static str, impl Stream<Item = Req> + Send + 'static)>, StreamError> {
        let Some(type_url) = Self::target(&req, origin) else {
            return Ok(None);
        };
        Ok(self
            .send(type_url, req, node)
            .await?
            .map(|rx| (type_url, receiver_stream(rx))))
    }

    /// Adds the responses of the stream of `type_url`.
    fn attach(&mut self, type_url: &'static str, responses: Streaming<Resp>) {
        let tagged = responses
            .map(move |r| (type_url, Some(r)))
            .chain(stream::once(async move { (type_url, None) }));
        self.inbound.push(Box::pin(tagged));
    }
}

/// Opens the stream of `$type_url`'s discovery service on `$ch` with the request
/// stream `$out`: one client method per type, in the order clusters, endpoints,
/// listeners, routes, secrets (state of the world or delta).
macro_rules! per_type_call {
    ($type_url:expr, $ch:expr, $max:expr, $out:expr,
     $clusters:ident, $endpoints:ident, $listeners:ident, $routes:ident, $secrets:ident) => {
        match $type_url {
            CLUSTER_TYPE => {
                ClusterDiscoveryServiceClient::new($ch)
                    .max_decoding_message_size($max)
                    .$clusters($out)
                    .await?
            }
            ENDPOINT_TYPE => {
                EndpointDiscoveryServiceClient::new($ch)
                    .max_decoding_message_size($max)
                    .$endpoints($out)
                    .await?
            }
            LISTENER_TYPE => {
                ListenerDiscoveryServiceClient::new($ch)
                    .max_decoding_message_size($max)
                    .$listeners($out)
                    .await?
            }
            ROUTE_TYPE => {
                RouteDiscoveryServiceClient::new($ch)
                    .max_decoding_message_size($max)
                    .$routes($out)
                    .await?
            }
            _ => {
                SecretDiscoveryServiceClient::new($ch)
                    .max_decoding_message_size($max)
                    .$secrets($out)
                    .await?
            }
        }
    };
}

/// The streams per type of one session, as the session's [`Link`]: requests go to
/// the stream of their type, opened on the first.
pub(super) struct SplitLink<P: Protocol> {
    channel: Channel,
    node: Node,
    max: usize,
    streams: PerType<P::Req, P::Resp>,
}

impl<P: Protocol> SplitLink<P>
where
    P::Req: Request,
{
    /// The next response of any stream; `Err(Closed)` once one ended.
    fn next(&mut self) -> Received<'_, P::Resp> {
        Box::pin(async move {
            match self.streams.inbound.next().await {
                Some((origin, item)) => {
                    let resp = item.ok_or(StreamError::Closed)??;
                    Ok(Some((Some(origin), resp)))
                }
                None => Ok(None),
            }
        })
    }
}

impl Link<AdsState> for SplitLink<AdsState> {
    fn recv(&mut self) -> Received<'_, DiscoveryResponse> {
        self.next()
    }

    fn send(
        &mut self,
        req: DiscoveryRequest,
        origin: Origin,
    ) -> BoxFuture<'_, Result<(), StreamError>> {
        Box::pin(async move {
            let Some((type_url, out)) = self.streams.route(req, &self.node, origin).await? else {
                return Ok(());
            };
            let (ch, max) = (self.channel.clone(), self.max);
            let responses = per_type_call!(
                type_url,
                ch,
                max,
                out,
                stream_clusters,
                stream_endpoints,
                stream_listeners,
                stream_routes,
                stream_secrets
            );
            self.streams.attach(type_url, responses.into_inner());
            Ok(())
        })
    }
}

impl Link<DeltaState> for SplitLink<DeltaState> {
    fn recv(&mut self) -> Received<'_, DeltaDiscoveryResponse> {
        self.next()
    }

    fn send(
        &mut self,
        req: DeltaDiscoveryRequest,
        origin: Origin,
    ) -> BoxFuture<'_, Result<(), StreamError>> {
        Box::pin(async move {
            let Some((type_url, out)) = self.streams.route(req, &self.node, origin).await? else {
                return Ok(());
            };
            let (ch, max) = (self.channel.clone(), self.max);
            let responses = per_type_call!(
                type_url,
                ch,
                max,
                out,
                delta_clusters,
                delta_endpoints,
                delta_listeners,
                delta_routes,
                delta_secrets
            );
            self.streams.attach(type_url, responses.into_inner());
            Ok(())
        })
    }
}

impl XdsClient {
    /// The streams per type of a session to `address`, none open yet.
    async fn split_link<P: Protocol>(&self, address: &str) -> Result<SplitLink<P>, StreamError>
    where
        P::Req: Request,
    {
        Ok(SplitLink {
            channel: self.channel(address).await?,
            node: self.config.node(),
            max: self.config.max_message_bytes.as_usize(),
            streams: PerType::new(),
        })
    }

    /// One state-of-the-world session of a stream per type, until one ends.
    pub(super) async fn split_stream(
        &self,
        address: &str,
        state: &mut Arc<AdsState>,
        server: &Server,
        last_applied: &mut Option<Arc<Config>>,
        got: &mut bool,
    ) -> Result<(), StreamError> {
        let mut link = self.split_link::<AdsState>(address).await?;
        for req in Arc::make_mut(state).open(link.node.clone()) {
            link.send(req, None).await?;
        }
        self.opened(address);
        self.drive(&mut link, state, server, last_applied, got)
            .await
    }

    /// One delta session of a stream per type, until one ends.
    pub(super) async fn split_delta_stream(
        &self,
        address: &str,
        state: &mut Arc<DeltaState>,
        server: &Server,
        last_applied: &mut Option<Arc<Config>>,
        got: &mut bool,
    ) -> Result<(), StreamError> {
        let mut link = self.split_link::<DeltaState>(address).await?;
        for req in state.open(link.node.clone()) {
            link.send(req, None).await?;
        }
        self.opened(address);
        self.drive(&mut link, state, server, last_applied, got)
            .await
    }
}
