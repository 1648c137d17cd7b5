//! The UDP forwarder: one socket facing clients, one socket per client 4-tuple
//! (a flow) facing the servers, so that a server's replies come back on the flow's
//! socket and leave toward the client from the load balancer's address.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use proxy_core::ConfigError;
use socket2::{SockAddr, SockRef};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, debug_span, info, warn, Instrument};

use super::config::{ForwarderConfig, ReturnPath, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_FLOWS};
use super::flows::{Clock, FlowTable};
use super::metrics::ForwarderMetrics;
use super::packet::parse;
use super::stats::ForwarderStats;
use super::table::Routes;

/// The largest datagram forwarded either way: a datagram that fills the receive
/// buffer (one octet more) is dropped and counted rather than passed on cut short.
/// QUIC's path MTU discovery treats the loss as a path limit.
pub const MAX_DATAGRAM: usize = 2048;

/// What the forwarder's tasks share.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) routes: ArcSwap<Routes>,
    pub(super) stats: Arc<ForwarderStats>,
    started: Instant,
    last_warning: Throttle,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether a warning may be logged now: at most one a second, so that a failure
    /// repeated per packet (a descriptor limit under a flood) does not flood the log.
    pub(super) fn warning_allowed(&self) -> bool {
        self.last_warning.allow(self.now_ms())
    }
}

/// At most one event a second: the time of the last one allowed (ms, plus one so
/// that zero means never).
#[derive(Debug, Default)]
struct Throttle(AtomicU64);

impl Throttle {
    fn allow(&self, now_ms: u64) -> bool {
        let now = now_ms.saturating_add(1);
        let last = self.0.load(Relaxed);
        (last == 0 || now.saturating_sub(last) >= 1000)
            && self.0.compare_exchange(last, now, Relaxed, Relaxed).is_ok()
    }
}

/// Builds a [`Forwarder`] in code: the routes, then optional limits, then `bind`.
///
/// # Example
/// ```
/// use proxy_quic::{CidFormat, ConfigId, Decoder, ServerId};
/// use proxy_quic::lb::{ForwarderBuilder, Routes};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let mut decoder = Decoder::new();
/// decoder.insert(CidFormat::new(ConfigId::new(0).unwrap(), 2, 6, None, false).unwrap());
/// let routes = Routes::new(decoder, [(ServerId::from_hex("0a01").unwrap(), "127.0.0.1:4433".parse().unwrap())])
///     .unwrap();
/// let lb = ForwarderBuilder::new(routes)
///     .idle_timeout(std::time::Duration::from_secs(10))
///     .max_flows_per_ip(std::num::NonZeroU32::new(64))
///     .bind("127.0.0.1:0".parse().unwrap())
///     .await
///     .unwrap();
/// assert_eq!(lb.stats().snapshot().received, 0);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ForwarderBuilder {
    routes: Routes,
    idle_timeout: Duration,
    max_flows: NonZeroU32,
    max_flows_per_ip: Option<NonZeroU32>,
    return_path: ReturnPath,
}

impl ForwarderBuilder {
    /// A forwarder over `routes`, with the default limits.
    pub fn new(routes: Routes) -> Self {
        Self {
            routes,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_flows: DEFAULT_MAX_FLOWS,
            max_flows_per_ip: None,
            return_path: ReturnPath::Relay,
        }
    }

    /// How servers' datagrams return to clients (default [`ReturnPath::Relay`]);
    /// with [`ReturnPath::Encapsulated`] the flow limits do not apply.
    pub fn return_path(mut self, return_path: ReturnPath) -> Self {
        self.return_path = return_path;
        self
    }

    /// How long a flow lives without a packet either way (default 30 s; at least
    /// 1 ms is used).
    pub fn idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// The most flows at once (default 16384); each holds a socket.
    pub fn max_flows(mut self, max_flows: NonZeroU32) -> Self {
        self.max_flows = max_flows;
        self
    }

    /// The most flows of one source IP address (default: no limit).
    pub fn max_flows_per_ip(mut self, max: Option<NonZeroU32>) -> Self {
        self.max_flows_per_ip = max;
        self
    }

    /// Binds the client-facing socket at `address` and starts forwarding on the
    /// current tokio runtime.
    ///
    /// # Errors
    /// The bind's error.
    pub async fn bind(self, address: SocketAddr) -> io::Result<Forwarder> {
        let socket = UdpSocket::bind(address).await?;
        self.start(socket)
    }

    /// Starts forwarding on a socket already bound (for example one handed over by a
    /// hot upgrade); it is put in non-blocking mode.
    ///
    /// # Errors
    /// When the socket cannot be registered with the runtime.
    pub fn from_std(self, socket: StdUdpSocket) -> io::Result<Forwarder> {
        socket.set_nonblocking(true)?;
        self.start(UdpSocket::from_std(socket)?)
    }

    fn start(self, socket: UdpSocket) -> io::Result<Forwarder> {
        let local_addr = socket.local_addr()?;
        let shared = Arc::new(Shared {
            routes: ArcSwap::from_pointee(self.routes),
            stats: Arc::default(),
            started: Instant::now(),
            last_warning: Throttle::default(),
        });
        let idle_ms = u64::try_from(self.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let flows = FlowTable::new(
            self.max_flows.get(),
            self.max_flows_per_ip.map(NonZeroU32::get),
            idle_ms.max(1),
        );
        let sweep_every =
            (self.idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        info!(%local_addr, return_path = ?self.return_path, "quic-lb forwarder started");
        if self.return_path == ReturnPath::Encapsulated {
            let task = tokio::spawn(super::encapsulated::run(socket, local_addr, shared.clone()));
            return Ok(Forwarder {
                local_addr,
                shared,
                task,
            });
        }
        let task = tokio::spawn(receive_loop(
            Arc::new(socket),
            local_addr,
            shared.clone(),
            flows,
            sweep_every,
        ));
        Ok(Forwarder {
            local_addr,
            shared,
            task,
        })
    }
}

impl TryFrom<&ForwarderConfig> for ForwarderBuilder {
    type Error = ConfigError;

    fn try_from(config: &ForwarderConfig) -> Result<Self, ConfigError> {
        if config.idle_timeout.is_zero() {
            return Err(ConfigError::new(
                "idle_timeout",
                "must be more than zero: every packet would open a new flow",
            ));
        }
        Ok(Self::new(Routes::try_from(config)?)
            .idle_timeout(config.idle_timeout)
            .max_flows(config.max_flows)
            .max_flows_per_ip(config.max_flows_per_ip)
            .return_path(config.return_path))
    }
}

/// A running QUIC-LB forwarder. Dropping it stops it (every flow with it).
///
/// Each client datagram's first packet header is parsed ([`parse`]) and routed
/// ([`Routes::route`]): by the server ID in its destination connection ID, else by
/// the 4-tuple's Maglev hash. With [`ReturnPath::Relay`] it leaves through its
/// flow's socket, and what a server sends to that socket goes back to the client
/// from the forwarder's address; with [`ReturnPath::Encapsulated`] it leaves from
/// the forwarder's socket behind an [`EncapHeader`](super::EncapHeader), and
/// servers' wrapped datagrams go to the clients they name.
///
/// # Example
/// ```
/// use proxy_quic::{CidFormat, ConfigId, Decoder, Nonce, ServerId};
/// use proxy_quic::lb::{ForwarderBuilder, Routes};
/// use tokio::net::UdpSocket;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let format = CidFormat::new(ConfigId::new(0).unwrap(), 2, 6, None, false).unwrap();
/// let mut decoder = Decoder::new();
/// decoder.insert(format.clone());
/// let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
/// let sid = ServerId::from_hex("0a01").unwrap();
/// let routes = Routes::new(decoder.clone(), [(sid, server.local_addr().unwrap())]).unwrap();
/// let lb = ForwarderBuilder::new(routes).bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
///
/// // A 1-RTT packet whose connection ID carries the server's ID.
/// let cid = format.encode(&sid, &Nonce::new(&[1; 6]).unwrap(), 0).unwrap();
/// let mut packet = vec![0x40];
/// packet.extend_from_slice(cid.as_bytes());
/// packet.resize(64, 0);
/// let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
/// client.send_to(&packet, lb.local_addr()).await.unwrap();
///
/// // The server gets it from the client's flow socket, and its answer comes back to
/// // the client from the forwarder's address.
/// let mut buf = [0u8; 2048];
/// let (n, flow) = server.recv_from(&mut buf).await.unwrap();
/// assert_eq!(&buf[..n], &packet[..]);
/// server.send_to(b"answer", flow).await.unwrap();
/// let (n, from) = client.recv_from(&mut buf).await.unwrap();
/// assert_eq!((&buf[..n], from), (&b"answer"[..], lb.local_addr()));
/// assert_eq!(lb.stats().snapshot().routed_by_cid, 1);
///
/// // Servers change: swap in new routes.
/// let other = ServerId::from_hex("0a02").unwrap();
/// let servers = [(sid, server.local_addr().unwrap()), (other, "127.0.0.1:4434".parse().unwrap())];
/// lb.update(Routes::new(decoder, servers).unwrap());
/// assert_eq!(lb.routes().servers().count(), 2);
/// # }
/// ```
#[derive(Debug)]
pub struct Forwarder {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Forwarder {
    /// The address clients send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The counters.
    pub fn stats(&self) -> &ForwarderStats {
        &self.shared.stats
    }

    /// The counters in the Prometheus text format, labelled with this forwarder's
    /// address, to register with the admin server's metrics.
    pub fn metrics(&self) -> ForwarderMetrics {
        ForwarderMetrics::new(self.local_addr.to_string(), self.shared.stats.clone())
    }

    /// The routes in use.
    pub fn routes(&self) -> Arc<Routes> {
        self.shared.routes.load_full()
    }

    /// Swaps in new routes (servers added or removed, a config rotation): the next
    /// packet uses them. Connections already routed by connection ID stay on their
    /// server as long as its ID keeps its address.
    pub fn update(&self, routes: Routes) {
        info!(servers = routes.servers().count(), "quic-lb routes updated");
        self.shared.routes.store(Arc::new(routes));
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A flow: the socket toward the servers, and the task relaying their replies.
struct Flow {
    socket: Arc<UdpSocket>,
    replies: JoinHandle<()>,
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.replies.abort();
    }
}

async fn receive_loop(
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    shared: Arc<Shared>,
    mut flows: FlowTable<Flow>,
    sweep_every: Duration,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut sweep = tokio::time::interval(sweep_every);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, client)) => {
                    let datagram = buf.get(..n).unwrap_or_default();
                    forward(datagram, client, local, &socket, &shared, &mut flows);
                }
                Err(err) => {
                    debug!(?err, "receive failed");
                    tokio::task::yield_now().await;
                }
            },
            _ = sweep.tick() => {
                for _ in 0..flows.sweep(shared.now_ms()) {
                    shared.stats.flow_expired();
                }
            }
        }
    }
}

/// Routes one client datagram and sends it through the client's flow.
fn forward(
    datagram: &[u8],
    client: SocketAddr,
    local: SocketAddr,
    front: &Arc<UdpSocket>,
    shared: &Arc<Shared>,
    flows: &mut FlowTable<Flow>,
) {
    let stats = &shared.stats;
    stats.received();
    if datagram.len() > MAX_DATAGRAM {
        return stats.oversize();
    }
    let header = match parse(datagram) {
        Ok(header) => header,
        Err(err) => return stats.parse_error(err),
    };
    let routes = shared.routes.load();
    let Some(route) = routes.route(&header, client, local) else {
        return;
    };
    let now = shared.now_ms();
    let flow = match flows.get(client, now) {
        Some(flow) => flow,
        None => {
            if let Err(full) = flows.admit(client) {
                // Per packet of a flood: a debug line, the counter for operators.
                debug!(%client, ?full, "quic-lb flow refused");
                return stats.flow_limit();
            }
            let clock = Arc::new(Clock::new(now));
            let flow = match open_flow(route.server, client, front, shared, &clock) {
                Ok(flow) => flow,
                Err(err) => {
                    if shared.warning_allowed() {
                        warn!(%client, ?err, "quic-lb could not open a flow socket");
                    }
                    return stats.send_failed();
                }
            };
            stats.flow_opened();
            flows.insert(client, flow, clock)
        }
    };
    stats.routed(route.by);
    if send_now(&flow.socket, datagram, route.server).is_err() {
        stats.send_failed();
    }
}

/// A flow socket of `server`'s address family, and its reply task.
fn open_flow(
    server: SocketAddr,
    client: SocketAddr,
    front: &Arc<UdpSocket>,
    shared: &Arc<Shared>,
    clock: &Arc<Clock>,
) -> io::Result<Flow> {
    let any = match server {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let std_socket = StdUdpSocket::bind(any)?;
    std_socket.set_nonblocking(true)?;
    let socket = Arc::new(UdpSocket::from_std(std_socket)?);
    debug!(%client, flow = ?socket.local_addr().ok(), "quic-lb flow opened");
    let span = debug_span!("quic_lb_flow", %client);
    let replies = tokio::spawn(
        reply_loop(
            socket.clone(),
            front.clone(),
            client,
            shared.clone(),
            clock.clone(),
        )
        .instrument(span),
    );
    Ok(Flow { socket, replies })
}

/// Relays what servers send to a flow's socket back to its client.
async fn reply_loop(
    socket: Arc<UdpSocket>,
    front: Arc<UdpSocket>,
    client: SocketAddr,
    shared: Arc<Shared>,
    clock: Arc<Clock>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let stats = &shared.stats;
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(err) => {
                debug!(?err, "flow receive failed");
                tokio::task::yield_now().await;
                continue;
            }
        };
        if n > MAX_DATAGRAM {
            stats.oversize();
            continue;
        }
        if !shared.routes.load().is_server(from) {
            stats.reply_unknown_source();
            continue;
        }
        clock.touch(shared.now_ms());
        match send_now(&front, buf.get(..n).unwrap_or_default(), client) {
            Ok(()) => stats.reply(),
            Err(_) => stats.send_failed(),
        }
    }
}

/// Sends a datagram at once or not at all: a non-blocking `sendto` on the socket,
/// whatever tokio last saw of its readiness (a new flow's socket has not been
/// reported writable yet). A full buffer drops the datagram, as a router would.
pub(super) fn send_now(socket: &UdpSocket, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
    SockRef::from(socket)
        .send_to(datagram, &SockAddr::from(to))
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_at_most_one_a_second() {
        let t = Throttle::default();
        assert!(t.allow(0));
        assert!(!t.allow(0));
        assert!(!t.allow(999));
        assert!(t.allow(1000));
        assert!(!t.allow(1500));
        assert!(t.allow(5000));
    }
}
