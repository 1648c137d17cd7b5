//! The write side of one upstream connection.
//!
//! Callers append their encoded requests to the connection's write buffer under its
//! lock (held for the append only). One writer at a time holds the claim
//! ([`Writer`]); it takes the whole buffer as a batch (a swap of two buffers) and
//! writes it with the lock released, so callers keep appending meanwhile. A caller
//! that finds the writer free and no other call in flight claims it and writes at
//! once from its own task: a lone call goes out without waking the connection task.
//! With calls in flight, the caller gives the claim to the connection task instead,
//! so that the calls appended before the task runs (a downstream connection's
//! pipelined batch, other connections' calls) leave in one write: one system call
//! and one segment for the batch rather than one per call. A caller also hands the
//! claim to the task when the socket takes no more (or more keeps coming); the task
//! finishes the job with its own waker and releases the claim once the buffer is
//! empty.

use std::{
    io,
    pin::Pin,
    sync::{MutexGuard, PoisonError},
    task::{Context, Poll, Waker},
};

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWrite;

use super::Conn;
use crate::mux::WRITE_HIGH_WATER;

/// Batches a caller writes before it leaves the rest to the connection task: its
/// own, and one more that came meanwhile.
const CALLER_BATCHES: usize = 2;

/// Who writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Writer {
    /// Nobody: the buffer was empty; the next one to append writes.
    Free,
    /// A caller, from its own task.
    Caller,
    /// The connection task.
    Task,
}

/// The socket's write half and the batch being written; only the holder of the
/// claim touches it.
pub(super) struct Out {
    io: Box<dyn AsyncWrite + Send + Unpin>,
    sending: BytesMut,
    /// Whether the writer was flushed since its last write.
    flushed: bool,
}

impl Out {
    pub(super) fn new(io: Box<dyn AsyncWrite + Send + Unpin>) -> Self {
        Self {
            io,
            sending: BytesMut::with_capacity(8192),
            flushed: true,
        }
    }
}

// === impl Conn (write side) ===

impl<F> Conn<F> {
    fn out(&self) -> MutexGuard<'_, Out> {
        self.out.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes the buffer from the caller that claimed the writer, without waking
    /// anyone; hands the claim to the connection task when the socket is full, more
    /// keeps coming, or the write failed.
    pub(super) fn write_now(&self) {
        let mut cx = Context::from_waker(Waker::noop());
        match self.poll_write_out(&mut cx, CALLER_BATCHES) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => {
                tracing::debug!(error = %e, "upstream write failed");
                let mut st = self.lock();
                st.failed = true;
                st.writer = Writer::Task;
                drop(st);
                self.task.notify_one();
            }
            Poll::Pending => {
                self.lock().writer = Writer::Task;
                self.task.notify_one();
            }
        }
    }

    /// Writes batches until the buffer is empty (then flushes and releases the
    /// claim), at most `max_batches` of them (then `Pending`, the claim kept).
    pub(super) fn poll_write_out(
        &self,
        cx: &mut Context<'_>,
        max_batches: usize,
    ) -> Poll<io::Result<()>> {
        let mut out = self.out();
        let out = &mut *out;
        let mut batches = 0;
        loop {
            if out.sending.is_empty() {
                let mut st = self.lock();
                st.in_writer = 0;
                if st.stalled && st.buf.len() < WRITE_HIGH_WATER {
                    st.stalled = false;
                    self.room.notify_waiters();
                }
                if st.buf.is_empty() {
                    if !out.flushed {
                        drop(st);
                        match Pin::new(&mut *out.io).poll_flush(cx) {
                            Poll::Ready(Ok(())) => out.flushed = true,
                            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                            Poll::Pending => return Poll::Pending,
                        }
                        continue;
                    }
                    st.writer = Writer::Free;
                    if !st.open {
                        // A connection taking no new requests may be done now.
                        drop(st);
                        self.task.notify_one();
                    }
                    return Poll::Ready(Ok(()));
                }
                if batches == max_batches {
                    return Poll::Pending;
                }
                batches += 1;
                std::mem::swap(&mut st.buf, &mut out.sending);
                st.batch += 1;
                st.in_writer = out.sending.len();
                out.flushed = false;
            }
            match Pin::new(&mut *out.io).poll_write(cx, &out.sending) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => out.sending.advance(n),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            if out.sending.is_empty() {
                // Its room is reclaimed by the next append once it is the buffer.
                out.sending.clear();
            }
        }
    }

    /// Shuts the write half down (the connection's end).
    pub(super) fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.out().io).poll_shutdown(cx)
    }
}
