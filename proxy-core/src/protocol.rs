//! Protocol plug-ins: non-HTTP protocols (SOFARPC Bolt, Dubbo, a user's own) served
//! on a listener and spoken to upstream endpoints, registered by name in
//! [`crate::Registry`].
//!
//! A protocol maps its frames onto the one request type, the way gRPC maps onto
//! HTTP/2: service and method into the path, its header map into headers, the payload
//! into the body, facts such as [`crate::rpc::RpcInfo`] into extensions. So routes,
//! filters and balancers serve it unchanged. A failure the proxy answers itself
//! reaches the protocol as a local reply: a response with an `x-proxy-error` header
//! (`no_route`, `no_endpoints`, `connect_failure`, `upstream_timeout`, `overflow`,
//! `upstream_reset`, ...) that the protocol turns into its own error status.

use std::{fmt, future::Future, pin::Pin, sync::Arc};

use bytes::Bytes;
use tokio::sync::watch;

use crate::{
    config::ConnectionLimits, upstream::Connector, BoxHttp, Connection, HttpRequest, HttpResponse,
    ProxyError,
};

/// Whether the first bytes of a connection belong to a protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    /// They do.
    Match,
    /// They do not.
    NoMatch,
    /// Undecided: more bytes are needed.
    NeedMore,
}

/// A boxed future, as protocol plug-ins return them.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A protocol served on a listener (`listeners[].protocol: bolt`, or detected by
/// `auto`). Requests go into the listener's request stack.
pub trait ProtocolServer: fmt::Debug + Send + Sync + 'static {
    /// Whether a connection starting with `prefix` speaks this protocol.
    fn sniff(&self, prefix: &[u8]) -> Sniff;

    /// The name its connections travel under in a hot upgrade ([`ServeContext::handoff`]):
    /// a new process serves a connection handed in under this name with its own
    /// protocol of the same name. `None` (the default): its connections are not
    /// handed over, they drain.
    fn name(&self) -> Option<&str> {
        None
    }

    /// Serves the connection to its end. `prefix` holds the bytes already read from
    /// `conn.stream` (while sniffing). Each request goes through `service`, which
    /// already carries the connection's facts into the request extensions.
    fn serve(
        &self,
        conn: Connection,
        prefix: Bytes,
        service: BoxHttp,
        ctx: ServeContext,
    ) -> BoxFuture<()>;
}

/// What a protocol server gets to know about its listener.
#[derive(Debug, Clone)]
pub struct ServeContext {
    /// The listener's connection limits (header-read and idle timeouts apply to
    /// frames the same way).
    pub limits: Arc<ConnectionLimits>,
    /// Resolves when the connection should finish: the proxy drains, or a connection
    /// layer retires it. Stop reading new requests, finish those in flight, close.
    pub drain: Drain,
    /// A hot upgrade's hand-off of this connection to the new process, for a plain
    /// TCP or Unix connection of a protocol with a [`ProtocolServer::name`] on a
    /// server's listener; `None` otherwise (the connection drains).
    pub handoff: Option<HandOff>,
}

/// The hand-off of one protocol connection to the new process of a hot upgrade.
///
/// Once the drain signal fired, [`HandOff::moment`] says whether (and when) the
/// connection goes rather than drains. At that moment the protocol stops reading,
/// completes and writes every answer it owes for the calls in flight, then gives
/// its stream back with the bytes read and not parsed ([`HandOff::send`]): the new
/// process serves the socket from there, and this one never touches it again.
#[derive(Clone)]
pub struct HandOff {
    pub(crate) slot: Arc<crate::server::HandoffSlot>,
    pub(crate) listener: Arc<str>,
    pub(crate) protocol: Arc<str>,
    pub(crate) detach: Arc<crate::server::Detach>,
    pub(crate) stats: Arc<crate::metrics::ConnStats>,
}

impl fmt::Debug for HandOff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandOff")
            .field("listener", &self.listener)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

/// A signal to finish a connection at a request boundary.
#[derive(Debug, Clone)]
pub struct Drain(pub(crate) watch::Receiver<bool>);

impl Drain {
    /// Whether the signal has been given.
    pub fn is_draining(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the signal is given (at once if it was).
    pub async fn signaled(&mut self) {
        let _ = self.0.wait_for(|d| *d).await;
    }
}

/// A protocol spoken to one upstream endpoint: sends requests (already routed and
/// balanced) and returns their responses.
pub trait ProtocolClient: fmt::Debug + Send + Sync + 'static {
    /// Sends one request.
    fn send(&self, req: HttpRequest) -> BoxFuture<Result<HttpResponse, ProxyError>>;
}

/// A protocol spoken to upstream clusters (`clusters[].protocol: bolt`).
pub trait ProtocolUpstream: fmt::Debug + Send + Sync + 'static {
    /// A client for one endpoint; `connector` opens streams to it (TCP, the cluster's
    /// transport, the connect timeout).
    fn client(&self, connector: Connector) -> Arc<dyn ProtocolClient>;
}
