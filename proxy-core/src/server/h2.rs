//! Downstream HTTP/2 (h2c) on hyper: stream limits, rapid-reset protection (hyper's
//! for streams reset before they are accepted, our own for streams reset before they
//! are answered), idle connection timeout, access log with body bytes.

use std::{
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use bytes::{Buf, Bytes};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::Notify,
};
use tower::ServiceExt;

use super::conn::{ConnCtx, LogStart};
use crate::{net::Stream, proxy::ConnInfo, Body};

/// What the streams of one HTTP/2 connection tell its connection task.
#[derive(Debug, Default)]
struct ConnState {
    /// Streams whose request is being handled.
    in_flight: AtomicU32,
    /// A stream started since the idle timer last fired.
    active: AtomicBool,
    /// Streams the client reset before they were answered.
    resets: AtomicU32,
    /// Signalled when `resets` passes the listener's limit.
    abuse: Notify,
}

/// Tracks one stream: in flight until dropped; dropped before `answered` means the
/// client reset it (or the connection went away) before the answer.
struct StreamGuard {
    state: Arc<ConnState>,
    reset_limit: u32,
    answered: bool,
}

impl StreamGuard {
    fn new(state: &Arc<ConnState>, reset_limit: u32) -> Self {
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        state.active.store(true, Ordering::Relaxed);
        Self {
            state: state.clone(),
            reset_limit,
            answered: false,
        }
    }
}

impl StreamGuard {
    /// Marks the stream answered: dropping it is no longer a reset.
    fn answer(&mut self) {
        self.answered = true;
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
        if !self.answered
            && self.state.resets.fetch_add(1, Ordering::Relaxed) + 1 > self.reset_limit
        {
            self.state.abuse.notify_one();
        }
    }
}

/// Serves HTTP/2 on `stream`; `prefix` holds bytes already read by sniffing.
pub(crate) async fn serve(stream: Stream, prefix: Bytes, ctx: ConnCtx) {
    let limits = ctx.limits.clone();
    let streams = super::h2_streams::StreamSet::default();
    let mut builder = hyper::server::conn::http2::Builder::new(streams.clone());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_pending_accept_reset_streams(limits.h2_max_pending_reset_streams as usize)
        .max_local_error_reset_streams(Some(limits.h2_max_pending_reset_streams as usize))
        .max_header_list_size(u32::try_from(limits.max_header_bytes.get()).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(limits.idle_timeout / 2))
        .keep_alive_timeout(limits.header_read_timeout);
    let info = ConnInfo::new(ctx.peer, ctx.secure);
    let conn_ext = ctx.conn_extensions.as_ref().map(|c| c.extensions.clone());
    let svc = super::listen::CurrentStack(ctx.listener.clone());
    // One `Arc` per stream rather than a clone of every field of the context.
    let log_ctx = Arc::new(ctx.clone());
    let state = Arc::new(ConnState::default());
    let stream_state = state.clone();
    let reset_limit = limits.h2_max_pending_reset_streams;
    let underscores = limits.headers_with_underscores;
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let svc = svc.clone();
        let log_ctx = log_ctx.clone();
        let info = info.clone();
        let conn_ext = conn_ext.clone();
        let mut guard = StreamGuard::new(&stream_state, reset_limit);
        async move {
            let mut req = req.map(Body::from);
            if let Some(ext) = conn_ext {
                req.extensions_mut().extend(ext);
            }
            req.extensions_mut().insert(info.clone());
            let log = log_ctx.log_request(&req);
            let resp = match crate::http1::names::screen(req.headers_mut(), underscores) {
                Err(e) => {
                    tracing::debug!(error = %e, "bad request header names");
                    crate::proxy::local_reply(&crate::ProxyError::BadRequest(
                        "header name could be read as another field",
                    ))
                }
                Ok(()) => match svc.oneshot(req).await {
                    Ok(r) => r,
                    Err(e) => super::error_response(&e),
                },
            };
            guard.answer();
            let resp = match log {
                Some(log) => log_on_end(log, resp),
                None => resp,
            };
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let io = TokioIo::new(Prefixed {
        prefix,
        inner: crate::net::Counted {
            inner: stream,
            stats: ctx.stats.clone(),
        },
    });
    let conn = super::h2_streams::WithStreams::new(builder.serve_connection(io, service), streams);
    tokio::pin!(conn);
    let mut drain = ctx.drain.clone();
    let mut idle = tokio::time::interval_at(
        tokio::time::Instant::now() + limits.idle_timeout,
        limits.idle_timeout,
    );
    let grace = loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(peer = ?ctx.peer, error = %e, "h2 connection ended");
                }
                return;
            }
            _ = drain.wait_for(|d| *d) => break None,
            () = state.abuse.notified() => {
                tracing::debug!(peer = ?ctx.peer, "closing an h2 connection: too many streams reset before their answer");
                ctx.stats.reject();
                break Some(limits.header_read_timeout);
            }
            _ = idle.tick() => {
                // Closed when no stream was open or started for a whole idle period.
                let busy = state.in_flight.load(Ordering::Relaxed) > 0;
                if !state.active.swap(false, Ordering::Relaxed) && !busy {
                    break Some(limits.header_read_timeout);
                }
            }
        }
    };
    conn.as_mut().conn().graceful_shutdown();
    match grace {
        // Draining: in-flight streams finish; the server's drain deadline bounds this.
        None => {
            let _ = conn.await;
        }
        Some(grace) => {
            let _ = tokio::time::timeout(grace, conn).await;
        }
    }
}

/// Writes the access log line when the response body ends (or is dropped), with the
/// number of body bytes sent.
fn log_on_end(mut log: Box<LogStart>, resp: crate::HttpResponse) -> crate::HttpResponse {
    log.response(&resp);
    resp.map(|inner| {
        Body::new(LoggedBody {
            inner,
            sent: 0,
            log: Some(log),
        })
    })
}

pin_project_lite::pin_project! {
    struct LoggedBody {
        #[pin]
        inner: Body,
        sent: u64,
        log: Option<Box<LogStart>>,
    }

    impl PinnedDrop for LoggedBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(log) = this.log.take() {
                log.end(*this.sent);
            }
        }
    }
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = crate::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, crate::BoxError>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        if let Some(Ok(f)) = &frame {
            if let Some(d) = f.data_ref() {
                *this.sent += d.len() as u64;
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A stream that first yields bytes already read from it.
struct Prefixed {
    prefix: Bytes,
    inner: crate::net::Counted<Stream>,
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
