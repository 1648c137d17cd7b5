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
