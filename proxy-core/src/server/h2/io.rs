//! The byte stream under an HTTP/2 connection: the bytes sniffing already read come
//! first; every read and write is counted for the listener, and reads also tell the
//! keep-alive that the peer is alive.
//!
//! Writes are gathered while the connection task works through a round (the
//! connection's `hold` flag), and leave in one write at its end. `h2` writes a DATA
//! frame larger than 256 bytes on its own (its payload is chained, not copied), so
//! without this every answer would cost a write of its own; HAProxy too sends the
//! frames of many streams in one.

use std::{
    pin::Pin,
    sync::{atomic::Ordering, Arc},
    task::{Context, Poll},
};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{frame_census::FrameCensus, Shared};
use crate::net::{ByteCounter, Counted, Stream};

impl ByteCounter for Arc<Shared> {
    fn rx(&self, n: usize) {
        self.ctx.stats.count_rx(n);
        self.state.read.store(true, Ordering::Relaxed);
    }
    fn tx(&self, n: usize) {
        self.ctx.stats.count_tx(n);
    }
}

/// The most bytes gathered before they are written anyway.
const GATHER_MAX: usize = 16 * 1024;

/// A stream that first yields bytes already read from it, and gathers writes.
pub(super) struct Prefixed {
    prefix: Bytes,
    inner: Counted<Stream, Arc<Shared>>,
    /// The gathered bytes: `gathered[written..]` are still to be written. A plain
    /// vector emptied once written, so that every round gathers from its start (a
    /// `BytesMut` advanced to its end keeps its offset, and the next round's bytes
    /// were moved back to the front when they reached its end: a copy per round).
    gathered: Vec<u8>,
    written: usize,
    /// The client's frames that move nothing forward, against their budget.
    census: FrameCensus,
}

impl Prefixed {
    pub(super) fn new(prefix: Bytes, stream: Stream, shared: Arc<Shared>) -> Self {
        Self {
            prefix,
            inner: Counted {
                inner: stream,
                stats: shared,
            },
            gathered: Vec::new(),
            written: 0,
            census: FrameCensus::new(),
        }
    }

    /// Tallies the bytes just read (`buf[from..]`); past the budget, the connection
    /// is told it is abused.
    fn tally(&mut self, buf: &ReadBuf<'_>, from: usize) {
        let state = &self.inner.stats.state;
        if state.renew_census.load(Ordering::Relaxed) {
            state.renew_census.store(false, Ordering::Relaxed);
            self.census.renew();
        }
        if !self.census.read(&buf.filled()[from..]) && !state.flooded.swap(true, Ordering::Relaxed)
        {
            state.abuse.notify_one();
        }
    }

    /// Whether `more` bytes join the gathered ones rather than go out now.
    fn gathers(&self, more: usize) -> bool {
        self.inner.stats.state.hold.load(Ordering::Relaxed)
            && self.gathered.len() - self.written + more <= GATHER_MAX
    }

    /// Writes the gathered bytes out.
    fn poll_write_gathered(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.written < self.gathered.len() {
            let this = &mut *self;
            let n = std::task::ready!(
                Pin::new(&mut this.inner).poll_write(cx, &this.gathered[this.written..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.gathered.clear();
        self.written = 0;
        self.inner
            .stats
            .state
            .gathered
            .store(false, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let from = buf.filled().len();
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
        } else {
            std::task::ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        }
        self.tally(buf, from);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.gathers(buf.len()) {
            self.census.wrote(buf.len());
            self.gathered.extend_from_slice(buf);
            self.inner
                .stats
                .state
                .gathered
                .store(true, Ordering::Relaxed);
            return Poll::Ready(Ok(buf.len()));
        }
        std::task::ready!(self.poll_write_gathered(cx))?;
        let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        self.census.wrote(n);
        Poll::Ready(Ok(n))
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        if self.gathers(len) {
            self.census.wrote(len);
            for b in bufs {
                self.gathered.extend_from_slice(b);
            }
            self.inner
                .stats
                .state
                .gathered
                .store(true, Ordering::Relaxed);
            return Poll::Ready(Ok(len));
        }
        std::task::ready!(self.poll_write_gathered(cx))?;
        let n = std::task::ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, bufs))?;
        self.census.wrote(n);
        Poll::Ready(Ok(n))
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        // Within a round, gathered bytes wait for its end (the connection task
        // flushes again then, with `hold` off).
        if self.inner.stats.state.hold.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        std::task::ready!(self.poll_write_gathered(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_write_gathered(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
