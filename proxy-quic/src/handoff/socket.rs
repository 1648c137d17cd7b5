//! [`HandoffSocket`]: the quinn socket of an HTTP/3 listener that can be handed
//! over. It reads its UDP socket; in a new process it forwards the datagrams of
//! the old process's connections over the channel; in an old process that handed
//! off it reads that channel instead of the UDP socket (and still sends on it).

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::atomic::{
    AtomicBool, AtomicU64,
    Ordering::{Relaxed, SeqCst},
};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use arc_swap::ArcSwapOption;
use futures_util::task::AtomicWaker;
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::io::unix::AsyncFd;

use super::channel::{self, Origin};
use super::generation::{self, Generation};

/// A listener's quinn socket, ready for a hot upgrade (see the
/// [module](super) docs). Made by the HTTP/3 listener; exposed for its counters.
#[derive(Debug)]
pub struct HandoffSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    /// The length of the connection IDs in short headers (this process's).
    cid_len: usize,
    /// New process: the channel to the old one and the old generation.
    forward: ArcSwapOption<Forward>,
    /// Old process, handed off: the channel the new one forwards on.
    successor: ArcSwapOption<AsyncFd<OwnedFd>>,
    /// The task reading, woken when what it reads changes.
    reader: AtomicWaker,
    /// The listener ended: reads nothing more (its channel closed).
    retired: AtomicBool,
    stats: Counters,
}

#[derive(Debug)]
struct Forward {
    channel: OwnedFd,
    old: Generation,
}

/// What a [`HandoffSocket`] counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandoffStats {
    /// New process: datagrams of the old process's connections forwarded to it.
    pub forwarded: u64,
    /// New process: datagrams for the old process dropped (its channel full or
    /// closed).
    pub forward_dropped: u64,
    /// Old process: datagrams received from the new process.
    pub received_forwarded: u64,
    /// Old process: messages on the channel that were not a forwarded datagram.
    pub bad_forwarded: u64,
}

#[derive(Debug, Default)]
struct Counters {
    forwarded: AtomicU64,
    forward_dropped: AtomicU64,
    received_forwarded: AtomicU64,
    bad_forwarded: AtomicU64,
}

// === impl HandoffSocket ===

impl HandoffSocket {
    /// Wraps `inner`, whose connections have IDs of `cid_len` bytes.
    pub(crate) fn new(inner: Arc<dyn AsyncUdpSocket>, cid_len: usize) -> Self {
        Self {
            inner,
            cid_len,
            forward: ArcSwapOption::empty(),
            successor: ArcSwapOption::empty(),
            reader: AtomicWaker::new(),
            retired: AtomicBool::new(false),
            stats: Counters::default(),
        }
    }

    /// New process: datagrams of connections of generation `old` go to `channel`
    /// until the old process closes it.
    pub(crate) fn forward_to(&self, channel: OwnedFd, old: Generation) {
        self.forward.store(Some(Arc::new(Forward { channel, old })));
    }

    /// Old process: read `channel` (the old process's end, non-blocking) rather
    /// than the UDP socket, from now until the new process closes it.
    /// A listener that ended already ([`retire`](Self::retire)) closes `channel` at
    /// once, so its successor forwards nothing. Called again (a successor started
    /// anew after the first one died), the new channel replaces the old one.
    ///
    /// # Errors
    /// When the channel cannot be registered with the runtime.
    pub(crate) fn read_from_successor(&self, channel: OwnedFd) -> io::Result<()> {
        // Sound here: the `AsyncFd` owns the descriptor, which cannot be closed
        // while it is registered (tokio's safe replacement takes only its own types).
        #[allow(deprecated)]
        let channel = AsyncFd::new(channel)?;
        self.successor.store(Some(Arc::new(channel)));
        // Ordered with `retire`: either it clears what was stored here, or this
        // sees it retired and clears it.
        if self.retired.load(SeqCst) {
            self.successor.store(None);
        }
        self.reader.wake();
        Ok(())
    }

    /// The listener ended (drained, its endpoint closed): reads nothing more and
    /// closes its end of a channel, so the process after it stops forwarding.
    pub(crate) fn retire(&self) {
        self.retired.store(true, SeqCst);
        self.successor.store(None);
        self.reader.wake();
    }

    /// Whether [`retire`](Self::retire) was called.
    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(SeqCst)
    }

    /// New process: whether the old process still takes forwarded datagrams (its
    /// end of the channel is open); once it is closed, forwarding stops.
    pub(crate) fn still_forwarding(&self) -> bool {
        let Some(forward) = self.forward.load_full() else {
            return false;
        };
        if channel::peer_open(&forward.channel) {
            return true;
        }
        self.forward.store(None);
        false
    }

    /// The counters.
    pub fn stats(&self) -> HandoffStats {
        let s = &self.stats;
        HandoffStats {
            forwarded: s.forwarded.load(Relaxed),
            forward_dropped: s.forward_dropped.load(Relaxed),
            received_forwarded: s.received_forwarded.load(Relaxed),
            bad_forwarded: s.bad_forwarded.load(Relaxed),
        }
    }

    /// Forwards the datagrams of `metas[..n]` that are the old process's,
    /// leaving the others in place (those of a buffer packed at its front; a
    /// buffer left empty has length 0, which quinn skips).
    fn forward_batch(
        &self,
        forward: &Forward,
        bufs: &mut [IoSliceMut<'_>],
        metas: &mut [RecvMeta],
        n: usize,
    ) {
        for (buf, meta) in bufs.iter_mut().zip(metas.iter_mut()).take(n) {
            let len = meta.len.min(buf.len());
            let stride = if meta.stride == 0 {
                len
            } else {
                meta.stride.min(len)
            };
            if stride == 0 {
                continue;
            }
            let origin = Origin {
                peer: meta.addr,
                local_ip: meta.dst_ip,
                ecn: meta.ecn,
            };
            let (mut read, mut write) = (0, 0);
            while read < len {
                let end = (read + stride).min(len);
                let segment = &buf[read..end];
                if generation::of_datagram(segment, self.cid_len) == Some(forward.old) {
                    self.send_to_old(forward, &origin, segment);
                } else {
                    if write != read {
                        buf.copy_within(read..end, write);
                    }
                    write += end - read;
                }
                read = end;
            }
            meta.len = write;
        }
    }

    fn send_to_old(&self, forward: &Forward, origin: &Origin, datagram: &[u8]) {
        match channel::send(&forward.channel, origin, datagram) {
            Ok(()) => {
                self.stats.forwarded.fetch_add(1, Relaxed);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.stats.forward_dropped.fetch_add(1, Relaxed);
            }
            Err(error) => {
                self.stats.forward_dropped.fetch_add(1, Relaxed);
                tracing::info!(%error, "the old process closed its forwarding channel: its connections are over");
                self.forward.store(None);
            }
        }
    }

    /// Reads the datagrams the new process forwards into `bufs`.
    fn poll_successor(
        &self,
        channel: &AsyncFd<OwnedFd>,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        metas: &mut [RecvMeta],
    ) -> Poll<io::Result<Option<usize>>> {
        let mut got = 0;
        while got < bufs.len().min(metas.len()) {
            let mut guard = match channel.poll_read_ready(cx) {
                Poll::Ready(guard) => guard?,
                Poll::Pending if got > 0 => break,
                Poll::Pending => return Poll::Pending,
            };
            let buf = &mut bufs[got];
            let n = match guard.try_io(|fd| channel::recv(fd.get_ref(), buf)) {
                Ok(Ok(n)) => n,
                Err(_would_block) if got > 0 => break,
                Err(_would_block) => continue,
                // The channel broke: the new process is gone.
                Ok(Err(error)) => {
                    tracing::warn!(%error, "reading the forwarding channel failed");
                    return Poll::Ready(Ok(None));
                }
            };
            if n == 0 {
                return Poll::Ready(Ok(None));
            }
            let Some((origin, header)) = Origin::read(&buf[..n]) else {
                self.stats.bad_forwarded.fetch_add(1, Relaxed);
                continue;
            };
            buf.copy_within(header..n, 0);
            let meta = &mut metas[got];
            *meta = RecvMeta::default();
            meta.addr = origin.peer;
            meta.len = n - header;
            meta.stride = n - header;
            meta.ecn = origin.ecn;
            meta.dst_ip = origin.local_ip;
            self.stats.received_forwarded.fetch_add(1, Relaxed);
            got += 1;
        }
        Poll::Ready(Ok(Some(got)))
    }
}

impl AsyncUdpSocket for HandoffSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        if self.retired.load(Relaxed) {
            return Poll::Pending;
        }
        self.reader.register(cx.waker());
        let successor = self.successor.load();
        if let Some(channel) = successor.as_deref() {
            match ready!(self.poll_successor(channel, cx, bufs, meta))? {
                Some(n) => return Poll::Ready(Ok(n)),
                None => {
                    // The new process is gone: this one reads the socket again
                    // (its connections go on; it takes no new ones while draining)
                    // until a successor started anew gives it a channel again.
                    tracing::warn!("the new process closed the forwarding channel: reading the UDP socket again");
                    // Unless that channel replaced this one meanwhile.
                    self.successor.compare_and_swap(&successor, None);
                }
            }
        }
        drop(successor);
        let n = ready!(self.inner.poll_recv(cx, bufs, meta))?;
        if let Some(forward) = self.forward.load().as_deref() {
            self.forward_batch(forward, bufs, meta, n);
        }
        Poll::Ready(Ok(n))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}
