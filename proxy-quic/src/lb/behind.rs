//! The server's side of the `encapsulated` return path: a quinn
//! [`AsyncUdpSocket`] that unwraps the datagrams its load balancers deliver,
//! reporting the client's real address to quinn, and wraps the datagrams quinn
//! sends to those clients so that the load balancer delivers them.

use std::collections::HashMap;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, Runtime, TokioRuntime, UdpPoller};

use super::encap::{for_socket, EncapHeader, MAX_ENCAP_HEADER};
use super::table::canonical;

/// The default of [`BehindLb::client_idle_timeout`]: 5 minutes.
pub const DEFAULT_CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// The default of [`BehindLb::max_clients`].
pub const DEFAULT_MAX_CLIENTS: usize = 65_536;

/// Wraps `socket` (a server's UDP socket, bound) for a quinn endpoint behind the
/// forwarder in [`ReturnPath::Encapsulated`](super::ReturnPath::Encapsulated)
/// mode, with `lb_addrs` the addresses the load balancers send from (their
/// listening addresses), and direct clients passed through. Must be called within
/// a tokio runtime; give the result to `quinn::Endpoint::new_with_abstract_socket`.
///
/// # Errors
/// When the socket cannot be set up for the runtime.
///
/// # Example
/// ```
/// use std::sync::Arc;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
/// let lb = "127.0.0.1:4433".parse().unwrap();
/// let socket = proxy_quic::lb::behind_load_balancer(socket, [lb])?;
/// let endpoint = quinn::Endpoint::new_with_abstract_socket(
///     quinn::EndpointConfig::default(), None, socket, Arc::new(quinn::TokioRuntime))?;
/// assert_ne!(endpoint.local_addr()?.port(), 0);
/// # Ok(()) }
/// ```
pub fn behind_load_balancer(
    socket: std::net::UdpSocket,
    lb_addrs: impl IntoIterator<Item = SocketAddr>,
) -> io::Result<Arc<dyn AsyncUdpSocket>> {
    Ok(BehindLb::new(lb_addrs).wrap(socket)?)
}

/// Options of an [`EncapsulatedSocket`], then [`wrap`](Self::wrap).
///
/// # Example
/// ```
/// use proxy_quic::lb::BehindLb;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// let socket = BehindLb::new(["10.0.0.10:443".parse().unwrap()])
///     .direct_clients(false)
///     .max_clients(std::num::NonZeroUsize::new(10_000).unwrap())
///     .client_idle_timeout(std::time::Duration::from_secs(60))
///     .wrap(std::net::UdpSocket::bind("127.0.0.1:0")?)?;
/// assert_eq!(socket.stats().unwrapped, 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct BehindLb {
    lbs: Vec<SocketAddr>,
    direct_clients: bool,
    client_idle: Duration,
    max_clients: NonZeroUsize,
}

impl BehindLb {
    /// Load balancers at `lb_addrs` (the addresses they send from); direct
    /// clients pass through.
    pub fn new(lb_addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self {
            lbs: lb_addrs.into_iter().map(canonical).collect(),
            direct_clients: true,
            client_idle: DEFAULT_CLIENT_IDLE_TIMEOUT,
            max_clients: NonZeroUsize::new(DEFAULT_MAX_CLIENTS).unwrap_or(NonZeroUsize::MIN),
        }
    }

    /// Whether datagrams from other addresses than the load balancers reach quinn
    /// as they are (default `true`: direct clients work); `false` drops them.
    pub fn direct_clients(mut self, on: bool) -> Self {
        self.direct_clients = on;
        self
    }

    /// How long a client learned through a load balancer is remembered without a
    /// datagram from it (default 5 minutes; make it at least the endpoint's idle
    /// timeout).
    pub fn client_idle_timeout(mut self, idle: Duration) -> Self {
        self.client_idle = idle;
        self
    }

    /// The most clients remembered at once (default 65536); past it, and with no
    /// idle one to forget, a new client is not remembered and counted.
    pub fn max_clients(mut self, max: NonZeroUsize) -> Self {
        self.max_clients = max;
        self
    }

    /// Wraps a bound socket, set up as quinn's tokio runtime sets up its own.
    /// Must be called within a tokio runtime.
    ///
    /// # Errors
    /// When the socket cannot be registered with the runtime.
    pub fn wrap(self, socket: std::net::UdpSocket) -> io::Result<Arc<EncapsulatedSocket>> {
        Ok(self.wrap_abstract(TokioRuntime.wrap_udp_socket(socket)?))
    }

    /// Wraps any quinn socket.
    pub fn wrap_abstract(self, inner: Arc<dyn AsyncUdpSocket>) -> Arc<EncapsulatedSocket> {
        let inner_v6 = inner.local_addr().is_ok_and(|a| a.is_ipv6());
        Arc::new(EncapsulatedSocket {
            inner,
            inner_v6,
            options: self,
            clients: Mutex::new(Clients::default()),
            stats: Stats::default(),
            started: Instant::now(),
        })
    }
}

/// A quinn socket behind QUIC-LB forwarders in encapsulated mode (see
/// [`BehindLb`]): datagrams from a load balancer are unwrapped and reported with
/// the client's address as their source (and the load balancer's listening
/// address as their destination, when it sends it); datagrams to a client
/// learned that way are wrapped and sent to the load balancer that delivered its
/// last datagram. Other datagrams pass as they are, or are dropped when direct
/// clients are off. It sends one datagram per call (no segmentation offload).
#[derive(Debug)]
pub struct EncapsulatedSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    inner_v6: bool,
    options: BehindLb,
    clients: Mutex<Clients>,
    stats: Stats,
    started: Instant,
}

/// What an [`EncapsulatedSocket`] counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EncapsulatedStats {
    /// Datagrams from a load balancer, unwrapped.
    pub unwrapped: u64,
    /// Datagrams from a load balancer without a valid header (or not fitting a
    /// spare buffer), dropped.
    pub dropped_bad_header: u64,
    /// Datagrams from other addresses, passed through.
    pub direct: u64,
    /// Datagrams from other addresses, dropped (direct clients off).
    pub dropped_direct: u64,
    /// Datagrams sent wrapped to a load balancer.
    pub wrapped: u64,
    /// New clients not remembered: the table was full.
    pub clients_full: u64,
}

#[derive(Debug, Default)]
struct Stats {
    unwrapped: AtomicU64,
    dropped_bad_header: AtomicU64,
    direct: AtomicU64,
    dropped_direct: AtomicU64,
    wrapped: AtomicU64,
    clients_full: AtomicU64,
}

/// Clients learned through a load balancer: the load balancer and when the client
/// was last heard of (ms since the socket was made).
#[derive(Debug, Default)]
struct Clients {
    by_addr: HashMap<SocketAddr, (SocketAddr, u64)>,
}

// === impl EncapsulatedSocket ===

impl EncapsulatedSocket {
    /// The counters.
    pub fn stats(&self) -> EncapsulatedStats {
        let s = &self.stats;
        EncapsulatedStats {
            unwrapped: s.unwrapped.load(Relaxed),
            dropped_bad_header: s.dropped_bad_header.load(Relaxed),
            direct: s.direct.load(Relaxed),
            dropped_direct: s.dropped_direct.load(Relaxed),
            wrapped: s.wrapped.load(Relaxed),
            clients_full: s.clients_full.load(Relaxed),
        }
    }

    /// The counters in the Prometheus text format under the label `listener`, to
    /// register with the admin server's metrics.
    pub fn metrics(self: &Arc<Self>, listener: &str) -> super::EncapsulatedMetrics {
        super::EncapsulatedMetrics::new(listener, self.clone())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn idle_ms(&self) -> u64 {
        u64::try_from(self.options.client_idle.as_millis()).unwrap_or(u64::MAX)
    }

    /// Remembers that `client` came through `lb`.
    fn learn(&self, client: SocketAddr, lb: SocketAddr) {
        let now = self.now_ms();
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = clients.by_addr.get_mut(&client) {
            *entry = (lb, now);
            return;
        }
        if clients.by_addr.len() >= self.options.max_clients.get() {
            let idle = self.idle_ms();
            clients
                .by_addr
                .retain(|_, (_, seen)| now.saturating_sub(*seen) < idle);
            if clients.by_addr.len() >= self.options.max_clients.get() {
                self.stats.clients_full.fetch_add(1, Relaxed);
                return;
            }
        }
        clients.by_addr.insert(client, (lb, now));
    }

    /// The load balancer to send to `client` through, if any.
    fn lb_of(&self, client: SocketAddr) -> Option<SocketAddr> {
        let now = self.now_ms();
        let known = {
            let clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
            clients.by_addr.get(&client).copied()
        };
        match known {
            Some((lb, seen)) if now.saturating_sub(seen) < self.idle_ms() => Some(lb),
            // Without direct clients, every client is behind a load balancer.
            _ if !self.options.direct_clients => self.options.lbs.first().copied(),
            _ => None,
        }
    }

    fn send_wrapped(
        &self,
        transmit: &Transmit<'_>,
        client: SocketAddr,
        lb: SocketAddr,
    ) -> io::Result<()> {
        let header = EncapHeader { client, lb: None };
        let stride = transmit
            .segment_size
            .unwrap_or(transmit.contents.len())
            .max(1);
        SCRATCH.with(|scratch| {
            let mut buf = scratch.borrow_mut();
            for datagram in transmit.contents.chunks(stride) {
                buf.clear();
                buf.resize(header.wire_len(), 0);
                header
                    .write(&mut buf)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                buf.extend_from_slice(datagram);
                self.inner.try_send(&Transmit {
                    destination: for_socket(lb, self.local_for_family()),
                    ecn: transmit.ecn,
                    contents: &buf,
                    segment_size: None,
                    src_ip: None,
                })?;
                self.stats.wrapped.fetch_add(1, Relaxed);
            }
            Ok(())
        })
    }

    /// An address of the inner socket's family, for [`for_socket`].
    fn local_for_family(&self) -> SocketAddr {
        if self.inner_v6 {
            SocketAddr::from(([0u16; 8], 0))
        } else {
            SocketAddr::from(([0u8; 4], 0))
        }
    }
}

thread_local! {
    /// The buffer a wrapped datagram is put together in: one per thread, reused.
    static SCRATCH: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(Vec::with_capacity(MAX_ENCAP_HEADER + 1500));
}

impl AsyncUdpSocket for EncapsulatedSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        let client = canonical(transmit.destination);
        match self.lb_of(client) {
            Some(lb) => self.send_wrapped(transmit, client, lb),
            None => self.inner.try_send(transmit),
        }
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let n = match self.inner.poll_recv(cx, bufs, meta) {
            Poll::Ready(Ok(n)) => n,
            other => return other,
        };
        Poll::Ready(Ok(super::unwrap::unwrap_batch(bufs, meta, n, self)))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }
}

impl super::unwrap::Receiver for EncapsulatedSocket {
    fn is_lb(&self, from: SocketAddr) -> bool {
        self.options.lbs.contains(&from)
    }

    fn direct_clients(&self) -> bool {
        self.options.direct_clients
    }

    fn learned(&self, client: SocketAddr, lb: SocketAddr) {
        self.learn(client, lb);
    }

    fn count(&self, event: super::unwrap::Event) {
        use super::unwrap::Event;
        let counter = match event {
            Event::Unwrapped => &self.stats.unwrapped,
            Event::BadHeader => &self.stats.dropped_bad_header,
            Event::Direct => &self.stats.direct,
            Event::DroppedDirect => &self.stats.dropped_direct,
        };
        counter.fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn socket(options: BehindLb) -> Arc<EncapsulatedSocket> {
        options
            .wrap(std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .unwrap()
    }

    #[tokio::test]
    async fn clients_are_bounded_and_forgotten_when_idle() {
        let lb = addr("10.0.0.1:443");
        let s = socket(
            BehindLb::new([lb])
                .max_clients(NonZeroUsize::MIN)
                .client_idle_timeout(Duration::from_millis(50)),
        );
        let (a, b) = (addr("192.0.2.1:1"), addr("192.0.2.2:2"));
        s.learn(a, lb);
        assert_eq!(s.lb_of(a), Some(lb));
        s.learn(b, lb);
        assert_eq!(s.stats().clients_full, 1, "the table holds one client");
        assert_eq!(s.lb_of(b), None, "direct clients on: b is sent directly");
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(s.lb_of(a), None, "a is forgotten after its idle timeout");
        s.learn(b, lb);
        assert_eq!((s.lb_of(b), s.stats().clients_full), (Some(lb), 1));
    }

    #[tokio::test]
    async fn without_direct_clients_everyone_goes_through_the_first_lb() {
        let (lb1, lb2) = (addr("10.0.0.1:443"), addr("[2001:db8::1]:443"));
        let s = socket(BehindLb::new([lb1, lb2]).direct_clients(false));
        assert_eq!(s.lb_of(addr("192.0.2.1:1")), Some(lb1));
        s.learn(addr("192.0.2.1:1"), lb2);
        assert_eq!(s.lb_of(addr("192.0.2.1:1")), Some(lb2));
        use super::super::unwrap::Receiver;
        assert!(s.is_lb(lb2) && !s.is_lb(addr("10.0.0.2:443")));
        assert!(!s.direct_clients());
    }
}
