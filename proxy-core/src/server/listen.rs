//! Binding listeners (TCP with `SO_REUSEPORT`, Unix sockets) and their accept loops.

use std::{
    net::SocketAddr,
    path::Path,
    sync::Arc,
};

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tower::ServiceExt;

use super::conn::{self, ConnCtx, OpenConn, ServeHttp};
use crate::{
    access_log::AccessLog,
    config::{ConnectionLimits, ListenAddress, ListenerProtocol},
    connection::{BoxConn, ConnLayerFn, Connection},
    metrics::ConnStats,
    net::Stream,
    proxy::Proxy,
    registry::LayerFn,
    snapshot::{ListenerPlan, Routing},
    BoxHttp,
};

/// Per-listener settings that a reload may change for new connections.
pub(crate) struct ListenerSettings {
    pub(crate) protocol: ListenerProtocol,
    /// The registered protocols served (the named one, or all for `auto`).
    pub(crate) protocols: Arc<[Arc<dyn crate::protocol::ProtocolServer>]>,
    pub(crate) limits: Arc<ConnectionLimits>,
    pub(crate) service: BoxHttp,
    /// The bare proxy when the listener has no filters, called without the boxed stack.
    pub(crate) direct: Option<Proxy>,
    /// Network filters, outermost first.
    pub(crate) conn_layers: Vec<ConnLayerFn>,
}

impl std::fmt::Debug for ListenerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerSettings")
            .field("protocol", &self.protocol)
            .field("limits", &self.limits)
            .field("network_filters", &self.conn_layers.len())
            .finish_non_exhaustive()
    }
}

/// A running listener: what its accept loops and connections read.
pub(crate) struct ListenerRuntime {
    pub(crate) name: Arc<str>,
    pub(crate) address: ListenAddress,
    /// The bound TCP address, when `address` is TCP.
    pub(crate) local: Option<SocketAddr>,
    pub(crate) routing: Arc<ArcSwap<Routing>>,
    pub(crate) settings: ArcSwap<ListenerSettings>,
    pub(crate) stats: Arc<ConnStats>,
    /// Set to stop accepting (listener removed or server draining).
    pub(crate) stop: watch::Sender<bool>,
}

impl std::fmt::Debug for ListenerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerRuntime")
            .field("name", &self.name)
            .field("address", &self.address)
            .finish()
    }
}

impl ListenerRuntime {
    pub(crate) fn new(plan: &ListenerPlan, local: Option<SocketAddr>) -> Arc<Self> {
        let routing = Arc::new(ArcSwap::new(plan.routing.clone()));
        let settings = build_settings(plan, &routing);
        Arc::new(Self {
            name: plan.config.name.as_str().into(),
            address: plan.config.address.clone(),
            local,
            routing,
            settings: ArcSwap::from_pointee(settings),
            stats: plan.conn_stats.clone(),
            stop: watch::channel(false).0,
        })
    }

    /// Applies a new plan for the same listener: routes at once, filters and limits
    /// for connections accepted from now on.
    pub(crate) fn update(&self, plan: &ListenerPlan) {
        self.routing.store(plan.routing.clone());
        self.settings
            .store(Arc::new(build_settings(plan, &self.routing)));
    }

    pub(crate) fn protocol(&self) -> ListenerProtocol {
        self.settings.load().protocol.clone()
    }
}

fn build_settings(plan: &ListenerPlan, routing: &Arc<ArcSwap<Routing>>) -> ListenerSettings {
    let proxy = Proxy::new(routing.clone());
    let terminal = BoxHttp::new(
        proxy
            .clone()
            .map_err(|e: std::convert::Infallible| -> crate::BoxError { match e {} }),
    );
    let service = stack(&plan.layers, terminal);
    ListenerSettings {
        protocol: plan.config.protocol.clone(),
        protocols: plan.protocols.clone(),
        limits: Arc::new(plan.config.limits.clone()),
        service,
        direct: plan.layers.is_empty().then_some(proxy),
        conn_layers: plan.conn_layers.clone(),
    }
}

/// The listener's request stack as of each call: the filters of the config current
/// when a request starts, so a reload's filters (RBAC, rate limits, steering) apply to
/// the next request of every open connection, while requests in flight finish on the
/// stack they started with. One `ArcSwap` load per request; the stack is built once
/// per config, never per request.
#[derive(Clone)]
pub(crate) struct CurrentStack(pub(crate) Arc<ListenerRuntime>);

impl tower_service::Service<crate::HttpRequest> for CurrentStack {
    type Response = crate::HttpResponse;
    type Error = crate::BoxError;
    type Future = tower::util::Oneshot<BoxHttp, crate::HttpRequest>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), crate::BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: crate::HttpRequest) -> Self::Future {
        self.0.settings.load().service.clone().oneshot(req)
    }
}

/// Wraps `inner` in `layers`, the first outermost.
fn stack(layers: &[LayerFn], inner: BoxHttp) -> BoxHttp {
    layers.iter().rev().fold(inner, |svc, layer| layer(svc))
}

/// A bound listening socket, not yet attached to a runtime.
#[derive(Debug)]
pub(crate) enum Bound {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

impl Bound {
    /// The bound TCP address (with the port chosen when the config asked for port 0).
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Tcp(l) => l.local_addr().ok(),
            Self::Unix(_) => None,
        }
    }
}

/// Binds `count` sockets for `address`: TCP sockets with `SO_REUSEPORT` when
/// `reuse_port` (all on the port the first one got, so that port 0 works), Unix sockets
/// once.
pub(crate) fn bind(
    address: &ListenAddress,
    count: usize,
    reuse_port: bool,
) -> std::io::Result<Vec<Bound>> {
    match address {
        ListenAddress::Tcp(addr) => {
            let first = bind_tcp(*addr, reuse_port)?;
            let actual = first.local_addr()?;
            let mut bound = vec![Bound::Tcp(first)];
            for _ in 1..if reuse_port { count } else { 1 } {
                bound.push(Bound::Tcp(bind_tcp(actual, true)?));
            }
            Ok(bound)
        }
        ListenAddress::Unix(path) => Ok(vec![Bound::Unix(bind_unix(path)?)]),
    }
}

fn bind_tcp(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(reuse_port)?;
    socket.set_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

fn bind_unix(path: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    // A socket file left by a dead process is replaced; a live one is refused.
    if path.exists() && std::os::unix::net::UnixStream::connect(path).is_err() {
        std::fs::remove_file(path)?;
    }
    let l = std::os::unix::net::UnixListener::bind(path)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Accepts connections on `bound` until the listener is stopped.
pub(crate) async fn accept_loop(
    bound: Bound,
    listener: Arc<ListenerRuntime>,
    drain: watch::Receiver<bool>,
    access_log: Arc<ArcSwap<Option<Arc<AccessLog>>>>,
) {
    let mut stop = listener.stop.subscribe();
    let tcp;
    let unix;
    match bound {
        Bound::Tcp(l) => {
            tcp = match tokio::net::TcpListener::from_std(l) {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::error!(listener = %listener.name, error = %e, "cannot register listener");
                    return;
                }
            };
            unix = None;
        }
        Bound::Unix(l) => {
            unix = match tokio::net::UnixListener::from_std(l) {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::error!(listener = %listener.name, error = %e, "cannot register listener");
                    return;
                }
            };
            tcp = None;
        }
    }
    tracing::info!(listener = %listener.name, address = %listener.address, "listening");
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            r = accept(tcp.as_ref(), unix.as_ref()) => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly, keep serving.
                tracing::warn!(listener = %listener.name, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let settings = listener.settings.load_full();
        if listener.stats.active() >= u64::from(settings.limits.max_connections) {
            listener.stats.reject();
            continue;
        }
        let ctx = ConnCtx {
            listener: listener.clone(),
            peer,
            protocols: settings.protocols.clone(),
            secure: false,
            conn_extensions: None,
            limits: settings.limits.clone(),
            stats: listener.stats.clone(),
            drain: drain.clone(),
            access_log: (**access_log.load()).clone(),
        };
        let span = tracing::debug_span!("conn", listener = %listener.name, peer = ?peer);
        let open = OpenConn::new(listener.stats.clone());
        if settings.conn_layers.is_empty() {
            let task = async move {
                conn::serve(stream, ctx).await;
                drop(open);
            };
            tokio::spawn(tracing::Instrument::instrument(task, span));
        } else {
            let terminal = BoxConn::new(ServeHttp(ctx));
            let svc = settings
                .conn_layers
                .iter()
                .rev()
                .fold(terminal, |svc, layer| layer(svc));
            let conn = Connection {
                stream,
                peer,
                listener: listener.name.clone(),
                secure: false,
                extensions: http::Extensions::new(),
            };
            let task = async move {
                if let Err(e) = svc.oneshot(conn).await {
                    tracing::debug!(error = %crate::DisplayChain(&*e), "connection stack failed");
                }
                drop(open);
            };
            tokio::spawn(tracing::Instrument::instrument(task, span));
        }
    }
    if let ListenAddress::Unix(path) = &listener.address {
        let _ = std::fs::remove_file(path);
    }
}

async fn accept(
    tcp: Option<&tokio::net::TcpListener>,
    unix: Option<&tokio::net::UnixListener>,
) -> std::io::Result<(Stream, Option<SocketAddr>)> {
    if let Some(l) = tcp {
        let (s, peer) = l.accept().await?;
        let _ = s.set_nodelay(true);
        return Ok((Stream::Tcp(s), Some(peer)));
    }
    if let Some(l) = unix {
        let (s, _) = l.accept().await?;
        return Ok((Stream::Unix(s), None));
    }
    std::future::pending().await
}
