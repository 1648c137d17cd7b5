//! Hot upgrade of protocol plug-ins' connections (Bolt, Dubbo, ...): the stream a
//! protocol serves can give its socket back, and [`HandOff`] hands it to the new
//! process once the protocol answered every call in flight.
//!
//! The protocol gets a boxed stream (it counts the connection's bytes); dropped
//! after [`HandOff::send`] asked for its socket, that stream gives the socket to the
//! hand-off instead of closing it. So only one process ever writes to the socket:
//! this one until its last answer is written, the new one from then on.

use std::{
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{conn::ConnCtx, lock};
use crate::{
    net::{Counted, Stream},
    protocol::HandOff,
};

/// Where a protocol connection's stream leaves its socket when a hand-off asks.
#[derive(Debug, Default)]
pub(crate) struct Detach {
    requested: AtomicBool,
    socket: Mutex<Option<Stream>>,
}

/// A protocol connection's stream: counts its bytes in the listener's stats and,
/// dropped once a hand-off asked for its socket, gives the socket to [`Detach`]
/// instead of closing it.
struct Detachable {
    inner: Option<Counted<Stream>>,
    detach: Arc<Detach>,
}

impl Drop for Detachable {
    fn drop(&mut self) {
        if self.detach.requested.load(Ordering::Acquire) {
            if let Some(counted) = self.inner.take() {
                *lock(&self.detach.socket) = Some(counted.inner);
            }
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the socket was handed over")
}

impl AsyncRead for Detachable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.inner.as_mut() {
            Some(s) => Pin::new(s).poll_read(cx, buf),
            None => Poll::Ready(Err(gone())),
        }
    }
}

impl AsyncWrite for Detachable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.inner.as_mut() {
            Some(s) => Pin::new(s).poll_write(cx, buf),
            None => Poll::Ready(Err(gone())),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.inner.as_mut() {
            Some(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            None => Poll::Ready(Err(gone())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner.as_mut() {
            Some(s) => Pin::new(s).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner.as_mut() {
            Some(s) => Pin::new(s).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// The stream a protocol serves (counting its bytes) and, for a plain socket of a
/// named protocol on a server's listener, its hand-off.
pub(super) fn protocol_stream(
    ctx: &ConnCtx,
    stream: Stream,
    protocol: Option<&str>,
) -> (Stream, Option<HandOff>) {
    let counted = Counted {
        inner: stream,
        stats: ctx.stats.clone(),
    };
    match (protocol, &ctx.handoff) {
        (Some(name), Some(slot)) if !ctx.secure && !matches!(counted.inner, Stream::Boxed(_)) => {
            let detach = Arc::new(Detach::default());
            let stream = Stream::Boxed(Box::new(Detachable {
                inner: Some(counted),
                detach: detach.clone(),
            }));
            let handoff = HandOff {
                slot: slot.clone(),
                listener: ctx.listener.name.clone(),
                protocol: name.into(),
                detach,
                stats: ctx.stats.clone(),
            };
            (stream, Some(handoff))
        }
        _ => (Stream::Boxed(Box::new(counted)), None),
    }
}

// === impl HandOff ===

impl HandOff {
    /// Whether this connection goes to a new process rather than drain, and when:
    /// once the drain signal fired, `Some(moment)` during a hot upgrade whose new
    /// process takes protocol connections (a moment drawn evenly over the upgrade's
    /// window: serve the connection as usual until then), `None` when it drains.
    pub fn moment(&self) -> Option<tokio::time::Instant> {
        let handoff = self.slot.load_full()?;
        handoff.takes_protocols().then(|| handoff.slot())
    }

    /// The most bytes read and not parsed that the connection may carry; with more,
    /// it drains instead.
    pub fn max_unread(&self) -> usize {
        self.slot.load().as_ref().map_or(0, |h| h.max_unread())
    }

    /// The protocol's name, as the new process looks it up.
    pub fn protocol(&self) -> &str {
        &self.protocol
    }

    /// Hands the connection over: `stream` is the whole stream the protocol was
    /// given (its halves put back together), every answer owed already written to
    /// it, and `unread` the bytes read from it and not parsed.
    ///
    /// # Errors
    /// `Err(Some(stream))` when it does not go (the new process takes no more
    /// connections, or too many unread bytes): the stream is served on, it drains.
    /// `Err(None)` when `stream` is not the one given or its socket was lost; it is
    /// closed.
    pub fn send(self, stream: Stream, unread: &[u8]) -> Result<(), Option<Stream>> {
        self.detach.requested.store(true, Ordering::Release);
        drop(stream);
        let Some(socket) = lock(&self.detach.socket).take() else {
            return Err(None);
        };
        let rewrap = |inner| {
            Stream::Boxed(Box::new(Counted {
                inner,
                stats: self.stats.clone(),
            }))
        };
        let Some(handoff) = self.slot.load_full() else {
            return Err(Some(rewrap(socket)));
        };
        match handoff.send(&self.listener, socket, unread, Some(&self.protocol), None) {
            Ok(()) => {
                tracing::debug!(protocol = %self.protocol, unread = unread.len(), "connection handed over");
                Ok(())
            }
            Err(Some(socket)) => Err(Some(rewrap(socket))),
            Err(None) => Err(None),
        }
    }
}
