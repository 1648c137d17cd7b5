//! Downstream HTTP/2 (h2c) on hyper, with stream limits and rapid-reset protection.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Buf, Bytes};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tower::ServiceExt;

use super::conn::ConnCtx;
use crate::{net::Stream, proxy::ConnInfo, Body};

/// Serves HTTP/2 on `stream`; `prefix` holds bytes already read by sniffing.
pub(crate) async fn serve(stream: Stream, prefix: Bytes, ctx: ConnCtx) {
    let limits = &ctx.limits;
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_pending_accept_reset_streams(limits.h2_max_pending_reset_streams as usize)
        .max_local_error_reset_streams(Some(limits.h2_max_pending_reset_streams as usize))
        .max_header_list_size(limits.max_header_bytes)
        .keep_alive_interval(Some(limits.idle_timeout / 2))
        .keep_alive_timeout(limits.header_read_timeout);
    let info = ConnInfo::new(ctx.peer, ctx.secure);
    let conn_ext = ctx.conn_extensions.clone();
    let svc = ctx.service.clone();
    let log_ctx = ctx.clone();
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let svc = svc.clone();
        let log_ctx = log_ctx.clone();
        let info = info.clone();
        let conn_ext = conn_ext.clone();
        async move {
            let started = tokio::time::Instant::now();
            let mut req = req.map(Body::from);
            if let Some(ext) = conn_ext {
                req.extensions_mut().extend(ext);
            }
            req.extensions_mut().insert(info.clone());
            let (method, uri) = (req.method().clone(), req.uri().clone());
            let resp = match svc.oneshot(req).await {
                Ok(r) => r,
                Err(e) => super::error_response(&e),
            };
            log_ctx.log(
                &method,
                &uri,
                http::Version::HTTP_2,
                resp.status(),
                0,
                started.elapsed(),
                &resp,
            );
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let io = TokioIo::new(Prefixed {
        prefix,
        inner: stream,
    });
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut drain = ctx.drain.clone();
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(peer = ?ctx.peer, error = %e, "h2 connection ended");
            }
            return;
        }
        _ = drain.wait_for(|d| *d) => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

/// A stream that first yields bytes already read from it.
struct Prefixed {
    prefix: Bytes,
    inner: Stream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
