//! Opening connections to an endpoint: TCP with a timeout, then the cluster's
//! transport (TLS origination) when it has one.

use std::{fmt, future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use crate::{BoxError, ProxyError, Stream};

/// Secures a fresh TCP connection to an endpoint: TLS origination, registered by
/// name ([`crate::Registry::register_transport`]) and named in `clusters[].transport`.
///
/// # Example
/// ```
/// use std::{future::Future, net::SocketAddr, pin::Pin};
/// use proxy_core::{upstream::UpstreamTransport, BoxError, Stream};
///
/// /// Sends a fixed preamble on every new connection.
/// #[derive(Debug)]
/// struct Preamble(&'static [u8]);
/// impl UpstreamTransport for Preamble {
///     fn wrap(&self, mut tcp: tokio::net::TcpStream, _endpoint: SocketAddr)
///         -> Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>> {
///         let preamble = self.0;
///         Box::pin(async move {
///             use tokio::io::AsyncWriteExt;
///             tcp.write_all(preamble).await?;
///             Ok(Stream::Tcp(tcp))
///         })
///     }
/// }
/// ```
pub trait UpstreamTransport: fmt::Debug + Send + Sync + 'static {
    /// Secures `tcp`, a fresh connection to `endpoint`. Runs within the cluster's
    /// connect timeout.
    fn wrap(
        &self,
        tcp: tokio::net::TcpStream,
        endpoint: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;
}

/// Opens streams to one endpoint: TCP with `TCP_NODELAY`, then the transport, all
/// within the connect timeout.
#[derive(Clone, Debug)]
pub struct Connector {
    addr: SocketAddr,
    timeout: Duration,
    transport: Option<Arc<dyn UpstreamTransport>>,
    /// The endpoint's connection counters, for streams handed to protocol plug-ins:
    /// each stream counts as an open connection until dropped, and its bytes count.
    counts: Option<Arc<super::pool::OpenCount>>,
}

impl Connector {
    /// A connector to `addr`.
    pub fn new(
        addr: SocketAddr,
        timeout: Duration,
        transport: Option<Arc<dyn UpstreamTransport>>,
    ) -> Self {
        Self {
            addr,
            timeout,
            transport,
            counts: None,
        }
    }

    /// The same connector, whose streams count in the endpoint's connection stats.
    pub(crate) fn counting(mut self, counts: Arc<super::pool::OpenCount>) -> Self {
        self.counts = Some(counts);
        self
    }

    /// The endpoint address.
    pub fn address(&self) -> SocketAddr {
        self.addr
    }

    /// The connect timeout (TCP and transport handshake together).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Opens a stream.
    ///
    /// # Errors
    /// [`ProxyError::Connect`] when the TCP connection or the transport handshake
    /// fails or the timeout passes.
    pub async fn connect(&self) -> Result<Stream, ProxyError> {
        let addr = self.addr;
        let attempt = async {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|source| ProxyError::Connect { addr, source })?;
            let _ = tcp.set_nodelay(true);
            match &self.transport {
                None => Ok(Stream::Tcp(tcp)),
                Some(t) => t.wrap(tcp, addr).await.map_err(|e| ProxyError::Connect {
                    addr,
                    source: std::io::Error::other(e),
                }),
            }
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(stream)) => Ok(match &self.counts {
                None => stream,
                Some(counts) => {
                    let guard = counts
                        .try_open(u32::MAX, None)
                        .ok_or(ProxyError::Overflow { addr })?;
                    Stream::Boxed(Box::new(crate::net::Counted {
                        inner: stream,
                        stats: guard,
                    }))
                }
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ProxyError::Connect {
                addr,
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
            }),
        }
    }
}

/// A failure of an [`UpstreamTransport`] with its class: what an operator needs to
/// tell apart (`tls_unknown_issuer`, `tls_bad_name`, `tls_no_alpn`, `tls_handshake`),
/// shown in local replies as `x-proxy-error-detail` and logged with the endpoint.
/// Transports return it (boxed) from [`UpstreamTransport::wrap`]; the class must not
/// carry secrets.
///
/// # Example
/// ```
/// use proxy_core::upstream::TransportError;
/// let e = TransportError::new("tls_unknown_issuer", "invalid peer certificate: UnknownIssuer");
/// assert_eq!(e.class(), "tls_unknown_issuer");
/// assert_eq!(e.to_string(), "tls_unknown_issuer");
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{class}")]
pub struct TransportError {
    class: &'static str,
    #[source]
    source: BoxError,
}

impl TransportError {
    /// A failure of class `class` caused by `source`.
    pub fn new(class: &'static str, source: impl Into<BoxError>) -> Self {
        Self {
            class,
            source: source.into(),
        }
    }

    /// The failure's class.
    pub fn class(&self) -> &'static str {
        self.class
    }
}
