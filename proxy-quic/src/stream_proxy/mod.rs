//! QUIC streams proxied to TCP (raw QUIC, not HTTP/3): a [`StreamProxy`] accepts
//! QUIC connections of the configured ALPN protocols and proxies each
//! bidirectional stream to a TCP connection to an endpoint of a proxy-core
//! [`Cluster`](proxy_core::cluster::Cluster) (picked by its balancer, connected
//! with its transport and connect timeout), with the TCP proxy's semantics:
//!
//! - **half-close both ways**: the client's FIN shuts the upstream connection's
//!   write side (`shutdown(Write)`), the upstream's EOF finishes the QUIC stream,
//!   and the other direction goes on until it ends too;
//! - **idle timeout**: a stream with no byte moving either way for the idle timeout
//!   is reset ([`codes::IDLE_TIMEOUT`]) and its TCP connection closed;
//! - **byte counts** both ways in [`StreamProxyStats`] (and per stream in the debug
//!   log), rendered for the admin page by [`StreamProxyMetrics`];
//! - a stream whose upstream cannot be reached is reset with
//!   [`codes::CONNECT_FAILED`]; an upstream read or write error resets it with
//!   [`codes::UPSTREAM_ERROR`]; a client that resets its stream gets its upstream
//!   connection closed;
//! - **bounded streams**: at most `max_concurrent_streams` open per connection (the
//!   QUIC stream limit, so the client waits rather than being refused).
//!
//! Code first with [`StreamProxyBuilder`], or from the [`StreamProxyConfig`]
//! section.
//!
//! # Example
//! A TCP echo server as the cluster, one stream proxied to it by a quinn client:
//! ```
//! use std::sync::Arc;
//! use proxy_core::cluster::Cluster;
//! use proxy_quic::stream_proxy::StreamProxyBuilder;
//! use tokio::io::AsyncWriteExt;
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let cluster = Cluster::builder("echo").endpoint(echo.local_addr()?).build()?;
//! tokio::spawn(async move {
//!     let (mut s, _) = echo.accept().await.unwrap();
//!     let (mut r, mut w) = s.split();
//!     tokio::io::copy(&mut r, &mut w).await.unwrap();
//!     w.shutdown().await.unwrap();
//! });
//!
//! let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
//! let tls = proxy_quic::h3::server_config(
//!     cert.cert.pem().as_bytes(), cert.key_pair.serialize_pem().as_bytes())?;
//! let proxy = StreamProxyBuilder::new("echo", tls, cluster)
//!     .alpn([b"echo".to_vec()])
//!     .bind("127.0.0.1:0".parse()?)?;
//! let (addr, stats) = (proxy.local_addr(), proxy.stats());
//! tokio::spawn(proxy.serve(std::future::pending()));
//!
//! // A quinn client that trusts the certificate and speaks ALPN "echo".
//! let mut roots = rustls::RootCertStore::empty();
//! roots.add(cert.cert.der().clone())?;
//! let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(
//!     rustls::crypto::ring::default_provider()))
//!     .with_protocol_versions(&[&rustls::version::TLS13])?
//!     .with_root_certificates(roots)
//!     .with_no_client_auth();
//! client.alpn_protocols = vec![b"echo".to_vec()];
//! let client = quinn::ClientConfig::new(Arc::new(
//!     quinn::crypto::rustls::QuicClientConfig::try_from(client)?));
//! let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
//! endpoint.set_default_client_config(client);
//! let conn = endpoint.connect(addr, "localhost")?.await?;
//! let (mut send, mut recv) = conn.open_bi().await?;
//! send.write_all(b"ping").await?;
//! send.finish()?;                                  // half-close: FIN
//! assert_eq!(recv.read_to_end(64).await?, b"ping"); // the echo, then the upstream's FIN
//! assert_eq!(stats.snapshot().bytes_up, 4);
//! # Ok(()) }
//! ```

mod config;
mod copy;
mod error;
mod listener;
mod metrics;
mod stats;

pub use config::StreamProxyConfig;
pub use error::{StreamError, StreamProxyError};
pub use listener::{
    StreamProxy, StreamProxyBuilder, DEFAULT_BUFFER_BYTES, DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONCURRENT_STREAMS,
};
pub use metrics::StreamProxyMetrics;
pub use stats::{StreamProxyStats, StreamProxyStatsSnapshot};

/// The application error codes a [`StreamProxy`] resets (`RESET_STREAM`) and
/// stops (`STOP_SENDING`) a stream with.
pub mod codes {
    /// No TCP connection to an upstream could be made (or the cluster has no
    /// endpoint).
    pub const CONNECT_FAILED: u32 = 0x01;
    /// Reading or writing the upstream connection failed (reset by the upstream).
    pub const UPSTREAM_ERROR: u32 = 0x02;
    /// No byte moved either way for the idle timeout.
    pub const IDLE_TIMEOUT: u32 = 0x03;
    /// The client reset or stopped its stream, or its connection was lost.
    pub const CANCELLED: u32 = 0x04;
}
