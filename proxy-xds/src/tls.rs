//! TLS to the control plane: proxy-tls's origination (roots, server name, optional
//! client certificate for mTLS) under the gRPC connection, offering ALPN `h2`.

use std::{future::Future, net::IpAddr, pin::Pin, task::Poll};

use http::Uri;
use hyper_util::rt::TokioIo;
use proxy_core::BoxError;
use proxy_tls::{
    origin::UpstreamTlsStream, ConfigBuildError, OriginationConfig, OriginationTransport,
};
use tokio::net::TcpStream;

/// The origination for the control plane at `host`: `cfg`, offering `h2` when it
/// names no ALPN, and verifying `host` when it names no server name and `host` is
/// not an IP address.
///
/// # Errors
/// The [`ConfigBuildError`] of proxy-tls (unreadable files, a bad setting).
pub(crate) fn transport(
    cfg: &OriginationConfig,
    host: &str,
) -> Result<OriginationTransport, ConfigBuildError> {
    let mut cfg = cfg.clone();
    if cfg.alpn.is_empty() {
        cfg.alpn = vec!["h2".into()];
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if cfg.server_name.is_none() && bare.parse::<IpAddr>().is_err() {
        cfg.server_name = Some(bare.to_owned());
    }
    OriginationTransport::try_from(&cfg)
}

/// A connector for tonic: TCP to the URI's host and port, then the TLS handshake.
#[derive(Debug, Clone)]
pub(crate) struct TlsConnect {
    pub(crate) transport: OriginationTransport,
}

impl tower::Service<Uri> for TlsConnect {
    type Response = TokioIo<UpstreamTlsStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let transport = self.transport.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or("the control plane's address has no host")?;
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri
                .port_u16()
                .ok_or("the control plane's address has no port")?;
            let addr = tokio::net::lookup_host((host.as_str(), port))
                .await?
                .next()
                .ok_or("the control plane's host name has no address")?;
            let tcp = TcpStream::connect(addr).await?;
            let _ = tcp.set_nodelay(true);
            let tls = transport.connect(tcp, addr).await?;
            Ok(TokioIo::new(tls))
        })
    }
}
