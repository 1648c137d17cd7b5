//! Per-connection context and protocol dispatch.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::BytesMut;
use http::{Method, StatusCode, Uri, Version};
use tokio::{io::AsyncReadExt, sync::watch};

use super::listen::ListenerRuntime;
use crate::{
    access_log::{AccessLog, AccessRecord},
    config::{ConnectionLimits, ListenerProtocol},
    connection::Connection,
    metrics::ConnStats,
    net::Stream,
    proxy::MatchedRoute,
    BoxHttp, HttpResponse,
};

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a connection task needs.
#[derive(Clone)]
pub(crate) struct ConnCtx {
    pub(crate) listener: Arc<ListenerRuntime>,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) service: BoxHttp,
    pub(crate) direct: Option<crate::proxy::Proxy>,
    /// Whether a connection layer secured the stream (TLS).
    pub(crate) secure: bool,
    /// Facts from connection layers, for every request's extensions.
    pub(crate) conn_extensions: Option<http::Extensions>,
    pub(crate) limits: Arc<ConnectionLimits>,
    pub(crate) stats: Arc<ConnStats>,
    pub(crate) drain: watch::Receiver<bool>,
    pub(crate) access_log: Option<Arc<AccessLog>>,
}

impl ConnCtx {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn log(
        &self,
        method: &Method,
        uri: &Uri,
        version: Version,
        status: StatusCode,
        bytes_sent: u64,
        duration: Duration,
        resp: &HttpResponse,
    ) {
        if self.access_log.is_some() {
            let route = resp.extensions().get::<MatchedRoute>().map(|r| &*r.0.name);
            let proxy_error = resp
                .headers()
                .get("x-proxy-error")
                .and_then(|v| v.to_str().ok());
            self.log_record(
                method,
                uri,
                version,
                status,
                bytes_sent,
                duration,
                route,
                proxy_error,
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn log_record(
        &self,
        method: &Method,
        uri: &Uri,
        version: Version,
        status: StatusCode,
        bytes_sent: u64,
        duration: Duration,
        route: Option<&str>,
        proxy_error: Option<&str>,
    ) {
        if let Some(log) = &self.access_log {
            log.write(&AccessRecord {
                listener: &self.listener.name,
                peer: self.peer,
                method,
                uri,
                version,
                status,
                bytes_sent,
                duration,
                route,
                proxy_error,
            });
        }
    }

    /// Counts a request the connection loop answered itself (malformed, timed out).
    pub(crate) fn routing_stats_local_error(&self, reason: &'static str, status: StatusCode) {
        let routing = self.listener.routing.load();
        routing.stats.start();
        routing.stats.local_errors.add(reason);
        routing.stats.finish(status.as_u16(), Duration::ZERO);
    }
}

/// Runs one accepted connection to its end.
pub(crate) async fn serve(stream: Stream, ctx: ConnCtx) {
    match ctx.listener.protocol() {
        ListenerProtocol::Http1 => {
            super::h1::serve(stream, BytesMut::with_capacity(4096), ctx).await
        }
        ListenerProtocol::Http2 => super::h2::serve(stream, bytes::Bytes::new(), ctx).await,
        ListenerProtocol::Auto => {
            let mut stream = stream;
            let mut buf = BytesMut::with_capacity(4096);
            let timeout = ctx.limits.header_read_timeout;
            let sniffed = tokio::time::timeout(timeout, async {
                loop {
                    let n = buf.len().min(H2_PREFACE.len());
                    if buf[..n] != H2_PREFACE[..n] || n == H2_PREFACE.len() {
                        return true;
                    }
                    match stream.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => return false,
                        Ok(_) => {}
                    }
                }
            })
            .await;
            match sniffed {
                Ok(true) if buf.starts_with(H2_PREFACE) => {
                    super::h2::serve(stream, buf.freeze(), ctx).await
                }
                Ok(true) => super::h1::serve(stream, buf, ctx).await,
                _ => {}
            }
        }
    }
}

/// The terminal of a connection stack: serves HTTP on the connection.
#[derive(Clone)]
pub(crate) struct ServeHttp(pub(crate) ConnCtx);

impl tower::Service<Connection> for ServeHttp {
    type Response = ();
    type Error = crate::BoxError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), crate::BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, conn: Connection) -> Self::Future {
        let mut ctx = self.0.clone();
        ctx.peer = conn.peer;
        ctx.secure = conn.secure;
        ctx.conn_extensions = (!conn.extensions.is_empty()).then_some(conn.extensions);
        Box::pin(async move {
            serve(conn.stream, ctx).await;
            Ok(())
        })
    }
}

/// Counts an open downstream connection until dropped.
pub(crate) struct OpenConn(Arc<ConnStats>);

impl OpenConn {
    pub(crate) fn new(stats: Arc<ConnStats>) -> Self {
        stats.open();
        Self(stats)
    }
}

impl Drop for OpenConn {
    fn drop(&mut self) {
        self.0.close();
    }
}
