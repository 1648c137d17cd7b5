//! The connection stack: what a listener does with an accepted connection before (or
//! instead of) serving HTTP on it, as tower services over [`Connection`].
//!
//! The terminal service serves HTTP/1.1 or HTTP/2 on the connection's stream. Network
//! filters wrap it: a connection limit refuses by not calling the inner service, TLS
//! replaces `stream` with a decrypted [`Stream::Boxed`] and sets `secure`, a TCP proxy
//! is a terminal of its own. Facts a layer learns (a TLS peer identity) go into
//! `extensions` and reach every request's extensions on that connection.

use std::{net::SocketAddr, sync::Arc};

use crate::{BoxError, Stream};

/// An accepted connection, as the connection stack sees it.
#[derive(Debug)]
pub struct Connection {
    /// The byte stream.
    pub stream: Stream,
    /// The peer address (`None` for Unix sockets).
    pub peer: Option<SocketAddr>,
    /// The name of the listener that accepted it.
    pub listener: Arc<str>,
    /// Whether a layer has secured the stream (TLS); sets `x-forwarded-proto: https`.
    pub secure: bool,
    /// Facts established by connection layers, copied into every request's extensions.
    pub extensions: http::Extensions,
}

/// A boxed connection service: what connection stacks are built from. It resolves
/// when the connection is finished with.
pub type BoxConn = tower::util::BoxCloneSyncService<Connection, (), BoxError>;

/// Wraps a connection service in a network filter.
pub type ConnLayerFn = Arc<dyn Fn(BoxConn) -> BoxConn + Send + Sync>;

/// Who the peer proved to be with a client certificate (mutual TLS).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The certificate subject, as an RFC 4514 string.
    pub subject: Option<String>,
    /// URI subject alternative names, such as SPIFFE ids.
    pub uri_sans: Vec<String>,
    /// DNS subject alternative names.
    pub dns_sans: Vec<String>,
}

/// Facts about a TLS connection, put in [`Connection::extensions`] by the TLS layer
/// and so in every request's extensions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// The server name the client asked for.
    pub sni: Option<String>,
    /// The negotiated application protocol.
    pub alpn: Option<Vec<u8>>,
    /// The protocol version, e.g. `TLSv1.3`.
    pub version: &'static str,
    /// The cipher suite, e.g. `TLS13_AES_128_GCM_SHA256`.
    pub cipher: &'static str,
    /// The verified client identity, with mutual TLS.
    pub peer: Option<PeerIdentity>,
}

/// A signal a connection layer puts in [`Connection::extensions`] to retire the
/// connection later: HTTP/1.1 answers the request in flight with `Connection: close`
/// and closes; HTTP/2 sends GOAWAY and lets open streams finish; protocol plug-ins see
/// it as their drain signal. TLS certificate rotation retires old connections so.
///
/// # Example
/// ```
/// use proxy_core::connection::Retire;
/// let (handle, retire) = Retire::new();
/// assert!(!retire.is_retired());
/// handle.retire();
/// assert!(retire.is_retired());
/// ```
#[derive(Debug, Clone)]
pub struct Retire(pub(crate) tokio::sync::watch::Receiver<bool>);

/// Gives the signal of a [`Retire`].
#[derive(Debug, Clone)]
pub struct RetireHandle(Arc<tokio::sync::watch::Sender<bool>>);

impl Retire {
    /// A signal and the handle that gives it.
    pub fn new() -> (RetireHandle, Self) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (RetireHandle(Arc::new(tx)), Self(rx))
    }

    /// Whether the connection was asked to retire.
    pub fn is_retired(&self) -> bool {
        *self.0.borrow()
    }
}

impl RetireHandle {
    /// Asks the connection to finish at the next request boundary.
    pub fn retire(&self) {
        let _ = self.0.send(true);
    }
}

/// Facts about the downstream connection, put in every request's extensions.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The peer address (`None` for Unix sockets).
    pub peer: Option<std::net::SocketAddr>,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The peer IP as a header value, made once per connection for `x-forwarded-for`.
    pub(crate) peer_ip: Option<http::HeaderValue>,
}

impl ConnInfo {
    /// Facts about a connection from `peer`.
    pub fn new(peer: Option<std::net::SocketAddr>, tls: bool) -> Self {
        let peer_ip = peer.and_then(|p| http::HeaderValue::from_str(&p.ip().to_string()).ok());
        Self { peer, tls, peer_ip }
    }
}
