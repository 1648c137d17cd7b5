//! Binding listeners (TCP with `SO_REUSEPORT`, Unix sockets) and their accept loops.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{atomic::Ordering, Arc},
};

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tower::ServiceExt;

use super::conn::{self, ConnCtx};
use crate::{
    access_log::AccessLog,
    config::{ConnectionLimits, ListenAddress, ListenerProtocol},
    metrics::ConnStats,
    net::Stream,
    proxy::Proxy,
    registry::LayerFn,
    snapshot::{ListenerPlan, Routing},
    BoxHttp,
};

/// Per-listener settings that a reload may change for new connections.
#[derive(Debug)]
pub(crate) struct ListenerSettings {
    pub(crate) protocol: ListenerProtocol,
    pub(crate) limits: Arc<ConnectionLimits>,
    pub(crate) service: BoxHttp,
    /// The bare proxy when the listener has no filters, called without the boxed stack.
    pub(crate) direct: Option<Proxy>,
}

/// A running listener: what its accept loops and connections read.
pub(crate) struct ListenerRuntime {
    pub(crate) name: String,
    pub(crate) address: ListenAddress,
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
    pub(crate) fn new(plan: &ListenerPlan) -> Arc<Self> {
        let routing = Arc::new(ArcSwap::new(plan.routing.clone()));
        let settings = build_settings(plan, &routing);
        Arc::new(Self {
            name: plan.config.name.clone(),
            address: plan.config.address.clone(),
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
        self.settings.load().protocol
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
        protocol: plan.config.protocol,
        limits: Arc::new(plan.config.limits.clone()),
        service,
        direct: plan.layers.is_empty().then_some(proxy),
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

/// Binds `address`; TCP sockets get `SO_REUSEPORT` so that each worker binds its own.
pub(crate) fn bind(address: &ListenAddress) -> std::io::Result<Bound> {
    match address {
        ListenAddress::Tcp(addr) => bind_tcp(*addr).map(Bound::Tcp),
        ListenAddress::Unix(path) => bind_unix(path).map(Bound::Unix),
    }
}

fn bind_tcp(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
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
        if listener.stats.active.load(Ordering::Relaxed)
            >= u64::from(settings.limits.max_connections)
        {
            listener.stats.rejected.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let ctx = ConnCtx {
            listener: listener.clone(),
            peer,
            service: settings.service.clone(),
            direct: settings.direct.clone(),
            limits: settings.limits.clone(),
            stats: listener.stats.clone(),
            drain: drain.clone(),
            access_log: (**access_log.load()).clone(),
        };
        let span = tracing::debug_span!("conn", listener = %listener.name, peer = ?peer);
        tokio::spawn(tracing::Instrument::instrument(
            conn::serve(stream, ctx),
            span,
        ));
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
