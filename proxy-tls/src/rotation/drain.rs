//! Retiring connections made with replaced material once their drain time passed.
//!
//! HTTP/2 connections are retired at once after the drain (GOAWAY lets open streams
//! finish and tells the client which requests to retry). An HTTP/1.1 connection is
//! retired when its *next request starts arriving*: core then answers that request
//! with `Connection: close` and closes. Closing an idle keep-alive connection instead
//! would race a request the client is sending at that moment, and that request would
//! fail; this way no request is lost. A connection that sends nothing for another
//! drain period after that is retired while idle (as an idle timeout would close it).

use std::{
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use proxy_core::{
    connection::{Retire, RetireHandle},
    BoxConn, BoxError, Connection,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tower::ServiceExt;

use super::Generation;

/// The retirement state of one connection, shared with its stream.
#[derive(Debug, Clone)]
pub(crate) struct Retirement {
    handle: RetireHandle,
    armed: Arc<AtomicBool>,
}

impl Retirement {
    /// A retirement and the core signal to put in the connection's extensions.
    pub(crate) fn new() -> (Self, Retire) {
        let (handle, retire) = Retire::new();
        (
            Self {
                handle,
                armed: Arc::new(AtomicBool::new(false)),
            },
            retire,
        )
    }

    fn on_read(&self) {
        if self.armed.load(Ordering::Relaxed) && self.armed.swap(false, Ordering::AcqRel) {
            self.handle.retire();
        }
    }
}

/// A stream that retires its connection when bytes arrive after arming.
#[derive(Debug)]
pub(crate) struct RetireOnRead<S> {
    inner: S,
    retirement: Retirement,
}

impl<S> RetireOnRead<S> {
    pub(crate) fn new(inner: S, retirement: Retirement) -> Self {
        Self { inner, retirement }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for RetireOnRead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.retirement.on_read();
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for RetireOnRead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Serves `conn` with `inner`; once `generation` is replaced by newer material and
/// `drain` has passed, retires the connection as the module docs describe
/// (`multiplexed`: HTTP/2, retired at once).
pub(crate) async fn serve_with_drain<T>(
    inner: BoxConn,
    conn: Connection,
    generation: &Generation<T>,
    drain: Duration,
    retirement: Retirement,
    multiplexed: bool,
) -> Result<(), BoxError> {
    let serve = inner.oneshot(conn);
    tokio::pin!(serve);
    tokio::select! {
        r = &mut serve => return r,
        () = async {
            generation.superseded().await;
            tokio::time::sleep(drain).await;
            if !multiplexed {
                retirement.armed.store(true, Ordering::Release);
                tokio::time::sleep(drain).await;
            }
        } => {
            tracing::debug!("tls material rotated: retiring a connection after its drain time");
            retirement.handle.retire();
        }
    }
    serve.await
}
