//! The errors of the QUIC stream to TCP proxy.

use std::net::SocketAddr;

/// Why a [`StreamProxy`](super::StreamProxy) could not be built or bound.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamProxyError {
    /// The TLS config offers no TLS 1.3 cipher suite that QUIC can start with.
    #[error("the TLS config offers no TLS 1.3 cipher suite QUIC can use")]
    CipherSuite(#[source] quinn::crypto::rustls::NoInitialCipherSuite),
    /// No ALPN protocol was given (QUIC needs one).
    #[error("at least one ALPN protocol is needed")]
    NoAlpn,
    /// The UDP socket could not be bound.
    #[error("cannot bind {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The UDP socket could not be set up for the endpoint.
    #[error("setting up the UDP socket")]
    Socket(#[source] std::io::Error),
    /// The idle timeout is zero (it would reset every stream at once).
    #[error("the idle timeout must be above zero")]
    ZeroIdleTimeout,
    /// Binding needs a tokio runtime (the endpoint's driver runs on it).
    #[error("binding a QUIC stream proxy needs a tokio runtime")]
    NoRuntime,
}

/// How one proxied stream ended badly (counted, logged at debug; the QUIC stream is
/// reset or stopped with the matching [`codes`](super::codes)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The cluster had no endpoint to pick.
    #[error("no endpoint in cluster {cluster}")]
    NoEndpoints {
        /// The cluster's name.
        cluster: String,
    },
    /// The TCP connection to the upstream failed.
    #[error("connecting to the upstream failed")]
    Connect(#[source] proxy_core::ProxyError),
    /// No byte moved either way for the idle timeout.
    #[error("the stream was idle for its idle timeout")]
    IdleTimeout,
    /// Reading or writing the TCP upstream failed.
    #[error("upstream i/o failed")]
    Upstream(#[source] std::io::Error),
    /// The client reset its send side or stopped its receive side, or the
    /// connection was lost.
    #[error("the client's stream failed")]
    Client(#[source] std::io::Error),
}
