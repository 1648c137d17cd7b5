//! Binding listeners (TCP with `SO_REUSEPORT`, Unix sockets) and their accept loops.

use std::{
    net::SocketAddr,
    os::fd::{AsFd, OwnedFd},
    path::Path,
    sync::{atomic::Ordering, Arc},
};

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tower::ServiceExt;

use super::{handoff::HandoffSlot, lock, Server};
use crate::{
    access_log::AccessLog,
    config::{ConnectionLimits, ListenAddress, ListenerProtocol},
    connection::ConnLayerFn,
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

    /// A duplicate of the socket (close-on-exec).
    pub(crate) fn try_clone_fd(&self) -> std::io::Result<OwnedFd> {
        match self {
            Self::Tcp(l) => l.as_fd().try_clone_to_owned(),
            Self::Unix(l) => l.as_fd().try_clone_to_owned(),
        }
    }

    /// A listening socket handed in, with the address it is bound to (read from the
    /// socket itself, never taken on trust); `None` for anything else.
    fn inherited(fd: OwnedFd) -> Option<(Self, ListenAddress)> {
        let socket = socket2::Socket::from(fd);
        if !socket.is_listener().ok()? || socket.set_nonblocking(true).is_err() {
            return None;
        }
        let local = socket.local_addr().ok()?;
        if let Some(addr) = local.as_socket() {
            return Some((Self::Tcp(socket.into()), ListenAddress::Tcp(addr)));
        }
        let path = local.as_pathname()?.to_path_buf();
        Some((
            Self::Unix(OwnedFd::from(socket).into()),
            ListenAddress::Unix(path),
        ))
    }
}

/// Whether a socket bound to `actual` serves a listener configured with `configured`
/// (port 0 stands for the port the first process got).
fn serves(configured: &ListenAddress, actual: &ListenAddress) -> bool {
    match (configured, actual) {
        (ListenAddress::Tcp(c), ListenAddress::Tcp(a)) => {
            c == a || (c.port() == 0 && c.ip() == a.ip())
        }
        (ListenAddress::Unix(c), ListenAddress::Unix(a)) => c == a,
        _ => false,
    }
}

/// Takes the handed-in sockets of the listener `name` configured at `address`, in the
/// order given (worker order). With `SO_REUSEPORT` and fewer sockets than `workers`,
/// more are bound into the same group; with more, every one is still accepted on, so
/// that no connection queued on one of them is lost.
pub(crate) fn take_inherited(
    inherited: &mut Vec<(String, OwnedFd)>,
    name: &str,
    address: &ListenAddress,
    workers: usize,
    reuse_port: bool,
) -> Vec<Bound> {
    let mut claimed = Vec::new();
    for (n, fd) in inherited.extract_if(.., |(n, _)| n == name) {
        match Bound::inherited(fd) {
            Some((b, actual)) if serves(address, &actual) => claimed.push(b),
            _ => {
                tracing::warn!(listener = %n, %address, "closing a handed-in socket that does not match the listener")
            }
        }
    }
    let actual = claimed.first().and_then(Bound::local_addr);
    while let (Some(addr), true) = (actual, reuse_port && claimed.len() < workers) {
        match bind_tcp(addr, true) {
            Ok(l) => claimed.push(Bound::Tcp(l)),
            Err(error) => {
                tracing::warn!(listener = %name, %error, "cannot add a SO_REUSEPORT socket");
                break;
            }
        }
    }
    claimed
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
    accept_loop_with(bound, listener, drain, access_log, None).await;
}

/// [`accept_loop`] for a server whose connections a hot upgrade may hand over.
pub(crate) async fn accept_loop_with(
    bound: Bound,
    listener: Arc<ListenerRuntime>,
    drain: watch::Receiver<bool>,
    access_log: Arc<ArcSwap<Option<Arc<AccessLog>>>>,
    handoff: Option<Arc<HandoffSlot>>,
) {
    let mut stop = listener.stop.subscribe();
    let registered = match bound {
        Bound::Tcp(l) => tokio::net::TcpListener::from_std(l).map(|l| (Some(l), None)),
        Bound::Unix(l) => tokio::net::UnixListener::from_std(l).map(|l| (None, Some(l))),
    };
    let (tcp, unix) = match registered {
        Ok(pair) => pair,
        Err(e) => {
            tracing::error!(listener = %listener.name, error = %e, "cannot register listener");
            return;
        }
    };
    tracing::info!(listener = %listener.name, address = %listener.address, "listening");
    let mut errors = super::accept_errors::AcceptErrors::default();
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
                errors.failed(&listener.name, &e);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let limit = listener.settings.load().limits.max_connections;
        if listener.stats.active() >= u64::from(limit) {
            listener.stats.reject();
            continue;
        }
        let ctx = super::spawn::context(&listener, peer, &drain, &access_log, &handoff);
        super::spawn::start(ctx, stream, bytes::BytesMut::new(), None, None);
    }
    // The Unix socket file is removed by whoever stopped the listener (a reload, the
    // drain), unless the socket went to a new process.
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

// === hot upgrade: listening sockets handed between processes ===

impl Server {
    /// The name under which [`Server::listener_sockets`] lists the admin listener's
    /// socket (a listener name no config can collide with in practice).
    pub const ADMIN_LISTENER: &'static str = "@admin";

    /// Starts listeners from sockets handed in (by a process being upgraded) instead of
    /// binding them. A socket serves the listener of its name whose configured address
    /// it is bound to (port 0 matches any port); the admin listener's socket is named
    /// [`Server::ADMIN_LISTENER`]. A configured listener with no socket handed in is
    /// bound as usual; a socket no listener claims is closed when the server starts.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use proxy_core::{config::Config, Registry, Server};
    /// let old = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let yaml = format!("listeners:\n  - name: web\n    address: \"{}\"\n    virtual_hosts: []\nclusters: []\n", old.local_addr()?);
    /// let server = Server::new(Config::from_yaml(&yaml)?, Registry::default())?
    ///     .with_inherited_listeners([("web".to_string(), old.into())]);
    /// # Ok(()) }
    /// ```
    pub fn with_inherited_listeners<I>(self, sockets: I) -> Self
    where
        I: IntoIterator<Item = (String, OwnedFd)>,
    {
        lock(&self.inner.inherited).extend(sockets);
        self
    }

    /// Duplicates of the listening sockets of the running listeners, by listener name,
    /// one per worker in worker order (the `SO_REUSEPORT` group), and of the admin
    /// listener's as [`Server::ADMIN_LISTENER`]: what a process being upgraded hands to
    /// its successor. The duplicates are close-on-exec.
    ///
    /// # Errors
    /// When a descriptor cannot be duplicated (out of descriptors).
    pub fn listener_sockets(&self) -> std::io::Result<Vec<(String, Vec<OwnedFd>)>> {
        let mut all = Vec::new();
        for (name, fds) in lock(&self.inner.sockets).iter() {
            let dups: std::io::Result<_> = fds.iter().map(OwnedFd::try_clone).collect();
            all.push((name.clone(), dups?));
        }
        if let Some(admin) = &*lock(&self.inner.admin_socket) {
            all.push((Self::ADMIN_LISTENER.to_string(), vec![admin.try_clone()?]));
        }
        Ok(all)
    }

    /// Called once a successor accepts on the sockets of [`Server::listener_sockets`]:
    /// stops accepting and drains like [`Server::shutdown`], but leaves Unix socket
    /// files in place, since they are the successor's now.
    pub fn hand_off(&self) {
        self.inner.handed_off.store(true, Ordering::Relaxed);
        self.shutdown();
    }

    /// The sockets handed in for the listener `config`, or new ones bound.
    pub(super) fn bind_or_inherit(
        &self,
        config: &crate::config::ListenerConfig,
    ) -> Result<Vec<Bound>, super::ServerError> {
        let workers = lock(&self.inner.workers).len().max(1);
        let mut inherited = lock(&self.inner.inherited);
        let (name, address) = (&config.name, &config.address);
        let claimed = take_inherited(&mut inherited, name, address, workers, config.reuse_port);
        drop(inherited);
        if !claimed.is_empty() {
            tracing::info!(listener = %name, sockets = claimed.len(), "listening on handed-in sockets");
            return Ok(claimed);
        }
        bind(address, workers, config.reuse_port).map_err(|source| super::ServerError::Io {
            what: format!("binding listener {name} ({address})"),
            source,
        })
    }

    /// The admin listener, handed in or bound; then closes every handed-in socket left.
    pub(super) fn bind_admin(
        &self,
        address: Option<SocketAddr>,
    ) -> Result<Option<tokio::net::TcpListener>, super::ServerError> {
        let mut left = std::mem::take(&mut *lock(&self.inner.inherited));
        let admin = address.map(|addr| {
            let name = Self::ADMIN_LISTENER;
            let bound =
                match take_inherited(&mut left, name, &ListenAddress::Tcp(addr), 1, false).pop() {
                    Some(Bound::Tcp(l)) => Ok(l),
                    _ => std::net::TcpListener::bind(addr).and_then(|l| {
                        l.set_nonblocking(true)?;
                        Ok(l)
                    }),
                };
            *lock(&self.inner.admin_socket) = bound
                .as_ref()
                .ok()
                .and_then(|l| l.as_fd().try_clone_to_owned().ok());
            bound
                .and_then(tokio::net::TcpListener::from_std)
                .map_err(|source| super::ServerError::Io {
                    what: format!("binding the admin listener {addr}"),
                    source,
                })
        });
        for (name, _) in left {
            tracing::warn!(listener = %name, "closed a handed-in socket no listener claims");
        }
        admin.transpose()
    }
}
