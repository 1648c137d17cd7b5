//! The errors of building an HTTP/3 listener.

use std::net::SocketAddr;

/// Why an [`H3Listener`](super::H3Listener) could not be built or bound.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum H3Error {
    /// The TLS config offers no TLS 1.3 cipher suite that QUIC can start with.
    #[error("the TLS config offers no TLS 1.3 cipher suite QUIC can use")]
    CipherSuite(#[source] quinn::crypto::rustls::NoInitialCipherSuite),
    /// The TLS config names ALPN protocols and `h3` is not among them.
    #[error("the TLS config's ALPN protocols do not include h3")]
    Alpn,
    /// The certificate chain or the private key did not load.
    #[error("loading the certificate and key")]
    Material(#[source] proxy_tls::MaterialError),
    /// rustls refused the config (protocol versions).
    #[error("building the rustls server config")]
    Rustls(#[source] rustls::Error),
    /// The UDP socket could not be bound or set up.
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
    /// Binding needs a tokio runtime (the endpoint's driver runs on it).
    #[error("binding an HTTP/3 listener needs a tokio runtime")]
    NoRuntime,
}
