//! The HTTP/3 listener: a quinn endpoint on a UDP socket, serving a request stack
//! built in code.

use std::{future::Future, net::SocketAddr, os::fd::OwnedFd, sync::Arc, time::Duration};

use proxy_core::BoxHttp;
use tokio::{sync::watch, task::JoinSet};

use super::{connection, tls, H3Error, H3Stats};
use crate::handoff::{Generation, Handoff, HandoffSocket, MarkedCids};
use crate::lb::BehindLb;
use crate::CidGenerator;

/// The default limit on concurrent request streams per connection.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 100;
/// The default idle timeout of a connection.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The default limit on a request head (decoded header fields), in bytes.
pub const DEFAULT_MAX_REQUEST_HEAD_BYTES: u64 = 64 * 1024;
/// The default time a draining connection gives its requests to finish.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds an [`H3Listener`]: HTTP/3 termination on quinn into the same request
/// stack type ([`BoxHttp`]) as the TCP listeners of `proxy_core::HttpListener`.
///
/// # Example
/// ```
/// use proxy_core::{Body, BoxHttp, HttpRequest, HttpResponse};
/// use proxy_quic::h3::{server_config, H3Listener};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
/// let tls = server_config(cert.cert.pem().as_bytes(), cert.key_pair.serialize_pem().as_bytes())?;
/// let hello = tower::service_fn(|req: HttpRequest| async move {
///     let text = format!("hello over {:?}\n", req.version());
///     Ok::<_, proxy_core::BoxError>(HttpResponse::new(Body::from(text)))
/// });
/// let listener = H3Listener::builder("h3", tls)
///     .max_concurrent_streams(200)
///     .idle_timeout(std::time::Duration::from_secs(30))
///     .bind("127.0.0.1:0".parse()?)?;
/// let addr = listener.local_addr();
/// assert_ne!(addr.port(), 0);
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let server = tokio::spawn(listener.serve(BoxHttp::new(hello), async { let _ = stopped.await; }));
/// // ... HTTP/3 clients connect to `addr` ...
/// let _ = stop.send(());
/// server.await?;
/// # Ok(()) }
/// ```
#[must_use]
pub struct H3ListenerBuilder {
    name: Arc<str>,
    tls: rustls::ServerConfig,
    endpoint: Option<quinn::EndpointConfig>,
    cid_generator: Option<CidGenerator>,
    max_concurrent_streams: u32,
    idle_timeout: Duration,
    max_request_head_bytes: u64,
    drain_timeout: Duration,
    behind_lb: Option<BehindLb>,
    generation: Generation,
    take_over: Option<OwnedFd>,
}

impl std::fmt::Debug for H3ListenerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H3ListenerBuilder")
            .field("name", &self.name)
            .field("cid_generator", &self.cid_generator.is_some())
            .field("max_concurrent_streams", &self.max_concurrent_streams)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_request_head_bytes", &self.max_request_head_bytes)
            .field("drain_timeout", &self.drain_timeout)
            .field("behind_lb", &self.behind_lb)
            .field("generation", &self.generation)
            .field("takes_over", &self.take_over.is_some())
            .finish_non_exhaustive()
    }
}

/// A bound HTTP/3 listener, ready to serve (see [`H3ListenerBuilder`]).
#[derive(Debug)]
pub struct H3Listener {
    endpoint: quinn::Endpoint,
    local: SocketAddr,
    name: Arc<str>,
    max_request_head_bytes: u64,
    drain_timeout: Duration,
    stats: Arc<H3Stats>,
    handoff: Handoff,
}

impl H3Listener {
    /// A builder for a listener named `name` (its spans' `listener` field), with
    /// `tls` as its TLS config: TLS 1.3 with ALPN `h3` (added when `tls` names no
    /// ALPN protocol); [`server_config`](super::server_config) makes one from PEM.
    pub fn builder(name: impl Into<Arc<str>>, tls: rustls::ServerConfig) -> H3ListenerBuilder {
        H3ListenerBuilder {
            name: name.into(),
            tls,
            endpoint: None,
            cid_generator: None,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_request_head_bytes: DEFAULT_MAX_REQUEST_HEAD_BYTES,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            behind_lb: None,
            generation: Generation::default(),
            take_over: None,
        }
    }

    /// The bound address (the port chosen when binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The listener's counters (handshakes, requests, malformed requests, stack
    /// errors, GOAWAYs), shared with its tasks: keep the `Arc` to read them while
    /// it serves.
    pub fn stats(&self) -> Arc<H3Stats> {
        self.stats.clone()
    }

    /// The hand-over of this listener to a new process in a hot upgrade (see
    /// [`Handoff`]); keep it to call once `serve` runs.
    pub fn handoff(&self) -> Handoff {
        self.handoff.clone()
    }

    /// Serves `stack` until `shutdown` completes: every request of every connection
    /// goes through a clone of `stack`, as on the TCP listeners; the request carries
    /// a [`proxy_core::ConnInfo`] with the client's address (`tls: true`) and
    /// version `HTTP/3`. Bodies stream both ways. Errors of the stack are answered
    /// as the TCP listeners answer them ([`proxy_core::proxy::reply_for_error`]:
    /// 502/503/504 for proxy errors, 500 otherwise).
    ///
    /// On shutdown, or once handed off to a new process ([`Handoff::hand_off`]),
    /// the listener refuses new connections, sends GOAWAY on every connection, lets
    /// the requests in flight finish for up to the drain timeout, then closes the
    /// connections and returns. It does not accept again: should the new process
    /// die (a roll-back), a successor started on the same socket serves new
    /// connections and forwards it the datagrams of its own (see [`Handoff`]).
    pub async fn serve<F>(self, stack: BoxHttp, shutdown: F)
    where
        F: Future<Output = ()> + Send,
    {
        let shared = Arc::new(connection::Shared {
            name: self.name.clone(),
            stack,
            max_head_bytes: self.max_request_head_bytes,
            drain_timeout: self.drain_timeout,
            stats: self.stats.clone(),
        });
        let (drain_tx, drain_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        let mut handed_off = self.handoff.handed_off();
        tokio::pin!(shutdown);
        tracing::info!(listener = %self.name, address = %self.local, "HTTP/3 listener serving");
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = handed_off.wait_for(|h| *h) => {
                    tracing::info!(listener = %self.name, "HTTP/3 listener handed off to a new process");
                    break;
                }
                incoming = self.endpoint.accept() => match incoming {
                    Some(incoming) => {
                        connections.spawn(connection::serve(incoming, shared.clone(), drain_rx.clone()));
                    }
                    None => break,
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        tracing::info!(listener = %self.name, connections = connections.len(), "HTTP/3 listener draining");
        // No new connections: quinn refuses Initials of new connections from now on.
        self.endpoint.set_server_config(None);
        let _ = drain_tx.send(true);
        // Each connection bounds its own drain; the margin covers the GOAWAY and close.
        let all_done = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(self.drain_timeout + Duration::from_secs(1), all_done)
            .await
            .is_err()
        {
            connections.shutdown().await;
        }
        self.endpoint.close(quinn::VarInt::from_u32(0), b"shutdown");
        // Lets the CONNECTION_CLOSE frames go out, briefly.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
        // Reads nothing more; a successor (a new process, or a listener started
        // again in this one after a roll-back) stops forwarding once this end closes.
        self.handoff.retire();
    }
}

impl H3ListenerBuilder {
    /// The quinn endpoint config (stateless reset key, supported QUIC versions).
    /// The default is quinn's. Its connection ID generator is replaced: the
    /// listener issues IDs of its [`cid_generator`](Self::cid_generator), or
    /// quinn's hashed ones, marked with its [`generation`](Self::generation).
    pub fn endpoint_config(mut self, config: quinn::EndpointConfig) -> Self {
        self.endpoint = Some(config);
        self
    }

    /// Issues QUIC-LB connection IDs from `generator`, so that a QUIC-LB load
    /// balancer in front routes every packet of a connection here (set on the
    /// endpoint config, the given one or the default).
    pub fn cid_generator(mut self, generator: CidGenerator) -> Self {
        self.cid_generator = Some(generator);
        self
    }

    /// The generation the listener marks its connection IDs with (default
    /// [`Generation::Even`]); [`take_over`](Self::take_over) sets the one after the
    /// old process's.
    pub fn generation(mut self, generation: Generation) -> Self {
        self.generation = generation;
        self
    }

    /// Takes over from a listener of an old process (hot upgrade): give
    /// [`bind_socket`](Self::bind_socket) the UDP socket it handed over
    /// ([`Handoff::prepare`]); the datagrams of its connections (IDs of `old`
    /// generation) go to it over `forward`, its end of the forwarding channel,
    /// until it closes the channel; this listener's IDs are of the next
    /// generation. Keep the connection ID length of the old process.
    pub fn take_over(mut self, forward: OwnedFd, old: Generation) -> Self {
        self.generation = old.next();
        self.take_over = Some(forward);
        self
    }

    /// The most request streams a client may have open at once on a connection
    /// (QUIC `initial_max_streams_bidi`); more wait for stream credit. Default
    /// 100; 0 lets no request in.
    pub fn max_concurrent_streams(mut self, streams: u32) -> Self {
        self.max_concurrent_streams = streams;
        self
    }

    /// A connection with no packet for this long is closed (QUIC
    /// `max_idle_timeout`, the smaller of the client's and this one applies).
    /// Default 60 s; zero turns the server's timeout off (QUIC's meaning of 0);
    /// values past QUIC's limit (about 146 years) are capped.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// The largest request head accepted, in bytes of decoded header fields (the h3
    /// setting `SETTINGS_MAX_FIELD_SECTION_SIZE`); larger heads are answered 431.
    /// Default 64 KiB.
    pub fn max_request_head_bytes(mut self, bytes: u64) -> Self {
        self.max_request_head_bytes = bytes;
        self
    }

    /// How long a draining connection lets its requests finish. Default 10 s.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Serves behind QUIC-LB forwarders in encapsulated mode
    /// ([`ReturnPath::Encapsulated`](crate::lb::ReturnPath::Encapsulated)): the
    /// socket is wrapped with `behind` ([`BehindLb`]), so connections through the
    /// forwarders see the clients' real addresses and answer through them.
    ///
    /// ```
    /// # fn f(tls: rustls::ServerConfig) -> Result<(), proxy_quic::h3::H3Error> {
    /// use proxy_quic::{h3::H3Listener, lb::BehindLb};
    /// let lbs = ["10.0.0.10:443".parse().unwrap()];
    /// let h3 = H3Listener::builder("h3", tls).behind_load_balancer(BehindLb::new(lbs));
    /// # Ok(()) }
    /// ```
    pub fn behind_load_balancer(mut self, behind: BehindLb) -> Self {
        self.behind_lb = Some(behind);
        self
    }

    /// Binds `address` (UDP) and starts the endpoint; must be called within a tokio
    /// runtime.
    ///
    /// # Errors
    /// [`H3Error::NoRuntime`] outside a tokio runtime, [`H3Error::Alpn`] or
    /// [`H3Error::CipherSuite`] when the TLS config does not suit HTTP/3,
    /// [`H3Error::Bind`] when the socket cannot be bound.
    pub fn bind(self, address: SocketAddr) -> Result<H3Listener, H3Error> {
        let socket = std::net::UdpSocket::bind(address).map_err(|source| H3Error::Bind {
            addr: address,
            source,
        })?;
        self.bind_socket(socket)
    }

    /// Serves on `socket`, a UDP socket bound already (one handed over by the
    /// previous process in a hot upgrade, or set up with socket options of the
    /// caller's); must be called within a tokio runtime.
    ///
    /// # Errors
    /// As [`bind`](Self::bind); [`H3Error::Socket`] when the socket cannot be set
    /// up for the endpoint.
    pub fn bind_socket(self, socket: std::net::UdpSocket) -> Result<H3Listener, H3Error> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(H3Error::NoRuntime);
        }
        let crypto = tls::quic_crypto(self.tls)?;
        let mut transport = quinn::TransportConfig::default();
        transport
            .max_concurrent_bidi_streams(quinn::VarInt::from_u32(self.max_concurrent_streams))
            // The client's control and QPACK streams, and a few spare ones.
            .max_concurrent_uni_streams(quinn::VarInt::from_u32(8))
            .max_idle_timeout(Some(
                quinn::IdleTimeout::try_from(self.idle_timeout)
                    .unwrap_or_else(|_| quinn::VarInt::MAX.into()),
            ));
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(Arc::new(transport));
        let mut endpoint_config = self.endpoint.unwrap_or_default();
        let generation = self.generation;
        let cid_len = match self.cid_generator {
            Some(generator) => {
                let cid_len = generator.len();
                let generators = generator.into_quinn_factory();
                endpoint_config
                    .cid_generator(move || Box::new(MarkedCids::new(generators(), generation)));
                cid_len
            }
            None => {
                endpoint_config.cid_generator(move || {
                    let hashed = Box::<quinn_proto::HashedConnectionIdGenerator>::default();
                    Box::new(MarkedCids::new(hashed, generation))
                });
                quinn_proto::ConnectionIdGenerator::cid_len(
                    &quinn_proto::HashedConnectionIdGenerator::default(),
                )
            }
        };
        let udp = OwnedFd::from(socket.try_clone().map_err(H3Error::Socket)?);
        let inner: Arc<dyn quinn::AsyncUdpSocket> = match self.behind_lb {
            Some(behind) => behind.wrap(socket).map_err(H3Error::Socket)?,
            None => {
                use quinn::Runtime as _;
                quinn::TokioRuntime
                    .wrap_udp_socket(socket)
                    .map_err(H3Error::Socket)?
            }
        };
        let socket = Arc::new(HandoffSocket::new(inner, cid_len));
        if let Some(forward) = self.take_over {
            socket.forward_to(forward, generation.next());
        }
        let endpoint = quinn::Endpoint::new_with_abstract_socket(
            endpoint_config,
            Some(server),
            socket.clone(),
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(H3Error::Socket)?;
        let local = endpoint.local_addr().map_err(H3Error::Socket)?;
        Ok(H3Listener {
            endpoint,
            local,
            name: self.name,
            max_request_head_bytes: self.max_request_head_bytes,
            drain_timeout: self.drain_timeout,
            stats: Arc::default(),
            handoff: Handoff::new(socket, udp, generation),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tls() -> rustls::ServerConfig {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        super::super::server_config(
            cert.cert.pem().as_bytes(),
            cert.key_pair.serialize_pem().as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn binding_outside_a_runtime_is_an_error() {
        let err = H3Listener::builder("h3", tls())
            .bind("127.0.0.1:0".parse().unwrap())
            .unwrap_err();
        assert!(matches!(err, H3Error::NoRuntime), "{err:?}");
    }

    #[tokio::test]
    async fn binds_a_given_socket_and_refuses_a_busy_address() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let listener = H3Listener::builder("h3", tls())
            .bind_socket(socket)
            .unwrap();
        assert_eq!(listener.local_addr(), addr);
        let err = H3Listener::builder("h3", tls()).bind(addr).unwrap_err();
        assert!(
            matches!(err, H3Error::Bind { addr: a, .. } if a == addr),
            "{err:?}"
        );
        let mut no_h3 = tls();
        no_h3.alpn_protocols = vec![b"http/1.1".to_vec()];
        let err = H3Listener::builder("h3", no_h3)
            .bind("127.0.0.1:0".parse().unwrap())
            .unwrap_err();
        assert!(matches!(err, H3Error::Alpn), "{err:?}");
    }
}
