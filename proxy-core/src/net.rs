//! Stream types for downstream connections: TCP or Unix, split into owned halves so
//! that a request body can read while the connection writes.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{tcp, unix, TcpStream, UnixStream},
};

/// Any byte stream a connection layer can produce (a TLS session, say).
pub trait Io: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {
    /// The stream as `Any`, for the layer that made it to take it apart again (a hot
    /// upgrade's [`crate::LayerHandOver`]).
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send>;
}

impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static> Io for T {
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

/// An accepted downstream stream.
pub enum Stream {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A Unix domain socket connection.
    Unix(UnixStream),
    /// A stream wrapped by a connection layer, e.g. TLS over TCP.
    Boxed(Box<dyn Io>),
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(s) => f.debug_tuple("Tcp").field(s).finish(),
            Self::Unix(s) => f.debug_tuple("Unix").field(s).finish(),
            Self::Boxed(_) => f.write_str("Boxed"),
        }
    }
}

impl Stream {
    pub(crate) fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Self::Tcp(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Tcp(r), WriteHalf::Tcp(w))
            }
            Self::Unix(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Unix(r), WriteHalf::Unix(w))
            }
            Self::Boxed(s) => {
                let (r, w) = tokio::io::split(s);
                (ReadHalf::Boxed(r), WriteHalf::Boxed(w))
            }
        }
    }
}

impl Stream {
    /// Puts the halves of [`Stream::into_split`] back together; `None` when they are
    /// not two halves of one stream.
    pub(crate) fn reunite(read: ReadHalf, write: WriteHalf) -> Option<Self> {
        match (read, write) {
            (ReadHalf::Tcp(r), WriteHalf::Tcp(w)) => r.reunite(w).ok().map(Self::Tcp),
            (ReadHalf::Unix(r), WriteHalf::Unix(w)) => r.reunite(w).ok().map(Self::Unix),
            (ReadHalf::Boxed(r), WriteHalf::Boxed(w)) if r.is_pair_of(&w) => {
                Some(Self::Boxed(r.unsplit(w)))
            }
            _ => None,
        }
    }

    /// The socket of a TCP or Unix stream, taken out of the runtime (no longer
    /// polled by this process), still non-blocking; `Err` gives a boxed stream back.
    pub(crate) fn into_socket(self) -> Result<std::io::Result<std::os::fd::OwnedFd>, Self> {
        match self {
            Self::Tcp(s) => Ok(s.into_std().map(Into::into)),
            Self::Unix(s) => Ok(s.into_std().map(Into::into)),
            boxed @ Self::Boxed(_) => Err(boxed),
        }
    }

    /// A TCP (or, with `unix`, Unix) stream on a connected socket, registered with
    /// the current runtime.
    pub(crate) fn from_socket(fd: std::os::fd::OwnedFd, unix: bool) -> io::Result<Self> {
        if unix {
            let s = std::os::unix::net::UnixStream::from(fd);
            s.set_nonblocking(true)?;
            Ok(Self::Unix(UnixStream::from_std(s)?))
        } else {
            let s = std::net::TcpStream::from(fd);
            s.set_nonblocking(true)?;
            let _ = s.set_nodelay(true);
            Ok(Self::Tcp(TcpStream::from_std(s)?))
        }
    }
}

impl ReadHalf {
    /// Whether this is a plain TCP or Unix socket (not a layer's stream, e.g. TLS).
    pub(crate) fn is_socket(&self) -> bool {
        !matches!(self, Self::Boxed(_))
    }
}

/// The read half of a downstream stream.
pub(crate) enum ReadHalf {
    Tcp(tcp::OwnedReadHalf),
    Unix(unix::OwnedReadHalf),
    Boxed(tokio::io::ReadHalf<Box<dyn Io>>),
}

/// The write half of a downstream stream.
pub(crate) enum WriteHalf {
    Tcp(tcp::OwnedWriteHalf),
    Unix(unix::OwnedWriteHalf),
    Boxed(tokio::io::WriteHalf<Box<dyn Io>>),
}

impl std::fmt::Debug for ReadHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadHalf")
    }
}

impl std::fmt::Debug for WriteHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteHalf")
    }
}

/// Implements `AsyncRead` / `AsyncWrite` for an enum whose variants `Tcp`, `Unix` and
/// `Boxed` each hold a stream (or half) that implements them.
macro_rules! delegate_io {
    (read $ty:ty) => {
        impl AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                delegate_io!(@each self, s => Pin::new(s).poll_read(cx, buf))
            }
        }
    };
    (write $ty:ty) => {
        impl AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                delegate_io!(@each self, s => Pin::new(s).poll_write(cx, buf))
            }
            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                delegate_io!(@each self, s => Pin::new(s).poll_write_vectored(cx, bufs))
            }
            fn is_write_vectored(&self) -> bool {
                true
            }
            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                delegate_io!(@each self, s => Pin::new(s).poll_flush(cx))
            }
            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                delegate_io!(@each self, s => Pin::new(s).poll_shutdown(cx))
            }
        }
    };
    (@each $this:ident, $s:ident => $call:expr) => {
        match $this.get_mut() {
            Self::Tcp($s) => $call,
            Self::Unix($s) => $call,
            Self::Boxed($s) => $call,
        }
    };
}

/// Waiting for a socket to become readable through its reader's one waker slot (the
/// slot `poll_read` uses too) rather than `readable()`, whose waiter is linked into
/// and out of the socket's waiter list under its lock on every wait: the connection
/// task is the only reader of its socket.
trait ReadReady {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl ReadReady for TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }
}

impl ReadReady for UnixStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        UnixStream::poll_read_ready(self, cx)
    }
}

impl ReadReady for tcp::OwnedReadHalf {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsRef::<TcpStream>::as_ref(self).poll_read_ready(cx)
    }
}

impl ReadReady for unix::OwnedReadHalf {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsRef::<UnixStream>::as_ref(self).poll_read_ready(cx)
    }
}

impl Stream {
    /// Whether an idle connection, on which nothing is expected, has had something
    /// arrive since its last read: the peer's close (FIN or reset) or bytes it sent
    /// unasked. Either way it can carry no further request. `try_read` reads the
    /// reactor's cached readiness first (no waker is registered, no lock taken) and
    /// makes a system call only when input was reported; that read may take a byte,
    /// and the connection is dropped then anyway. A boxed stream (TLS) is polled once
    /// with a waker that does nothing: its layer reads what arrived (a TLS
    /// `close_notify` and FIN read as the end, a session ticket as nothing), and the
    /// socket under it again makes a system call only when input was reported.
    pub(crate) fn is_stale(&mut self) -> bool {
        let quiet =
            |r: io::Result<usize>| matches!(r, Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        match self {
            Self::Tcp(s) => !quiet(s.try_read(&mut [0u8; 1])),
            Self::Unix(s) => !quiet(s.try_read(&mut [0u8; 1])),
            Self::Boxed(s) => {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let mut byte = [0u8; 1];
                let mut buf = ReadBuf::new(&mut byte);
                Pin::new(&mut **s).poll_read(&mut cx, &mut buf).is_ready()
            }
        }
    }

    /// Reads into `buf`, lending it a buffer only once bytes are there (see
    /// [`poll_lent`]).
    pub(crate) async fn read_lent(&mut self, buf: &mut bytes::BytesMut) -> io::Result<usize> {
        std::future::poll_fn(|cx| {
            let polled = match self {
                Self::Tcp(s) => poll_lent(s, cx, buf),
                Self::Unix(s) => poll_lent(s, cx, buf),
                Self::Boxed(s) => poll_lent_boxed(s, cx, buf),
            };
            give_back_unless_read(polled, buf)
        })
        .await
    }
}

impl ReadHalf {
    /// Reads into `buf`, lending it a buffer only once bytes are there.
    pub(crate) async fn read_lent(&mut self, buf: &mut bytes::BytesMut) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_read_lent(cx, buf)).await
    }

    /// [`Self::read_lent`] as a poll, for a connection task that waits for its peer
    /// beside other work; the task is woken when bytes (or the end) arrive.
    pub(crate) fn poll_read_lent(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut bytes::BytesMut,
    ) -> Poll<io::Result<usize>> {
        let polled = match self {
            Self::Tcp(s) => poll_lent(s, cx, buf),
            Self::Unix(s) => poll_lent(s, cx, buf),
            Self::Boxed(s) => poll_lent_boxed(s, cx, buf),
        };
        give_back_unless_read(polled, buf)
    }
}

/// One poll of a TCP or Unix socket (or half) for what it has, lending `buf` a buffer
/// only once there are bytes to read (see [`crate::bufs`]): readiness is waited for
/// with no buffer, so a connection that waits for its next request or response holds
/// none. Returns 0 at the end of the stream, as `read_buf` does. The read goes
/// through `poll_read` (unlike `try_read`), which tells the reactor that a short read
/// drained the socket, so the next wait for input does not start with a read that
/// fails with `WouldBlock`.
fn poll_lent<S: ReadReady + AsyncRead + Unpin>(
    s: &mut S,
    cx: &mut Context<'_>,
    buf: &mut bytes::BytesMut,
) -> Poll<io::Result<usize>> {
    if let Err(e) = std::task::ready!(s.poll_read_ready(cx)) {
        return Poll::Ready(Err(e));
    }
    crate::bufs::ready_for_read(buf);
    tokio_util::io::poll_read_buf(Pin::new(s), cx, buf)
}

/// [`poll_lent`] for a boxed stream (TLS), which gives no readiness: it reads into a
/// lent buffer right away.
fn poll_lent_boxed<S: AsyncRead + Unpin>(
    s: &mut S,
    cx: &mut Context<'_>,
    buf: &mut bytes::BytesMut,
) -> Poll<io::Result<usize>> {
    crate::bufs::ready_for_read(buf);
    tokio_util::io::poll_read_buf(Pin::new(s), cx, buf)
}

/// A read that is still waiting holds no buffer.
fn give_back_unless_read(
    polled: Poll<io::Result<usize>>,
    buf: &mut bytes::BytesMut,
) -> Poll<io::Result<usize>> {
    if polled.is_pending() {
        crate::bufs::give_back(buf);
    }
    polled
}

delegate_io!(read Stream);
delegate_io!(write Stream);
delegate_io!(read ReadHalf);
delegate_io!(write WriteHalf);

/// A stream whose bytes count in a listener's connection stats (`rx_bytes`,
/// `tx_bytes`): for the connection loops that hand their stream on whole (HTTP/2,
/// protocol plug-ins). The HTTP/1.1 loop counts its own reads and writes.
pub(crate) struct Counted<S, C = std::sync::Arc<crate::metrics::ConnStats>> {
    pub(crate) inner: S,
    pub(crate) stats: C,
}

/// Where a [`Counted`] stream counts its bytes.
pub(crate) trait ByteCounter {
    fn rx(&self, n: usize);
    fn tx(&self, n: usize);
}

impl ByteCounter for std::sync::Arc<crate::metrics::ConnStats> {
    fn rx(&self, n: usize) {
        self.count_rx(n);
    }
    fn tx(&self, n: usize) {
        self.count_tx(n);
    }
}

impl<S: AsyncRead + Unpin, C: ByteCounter + Unpin> AsyncRead for Counted<S, C> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.stats.rx(n);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin, C: ByteCounter + Unpin> AsyncWrite for Counted<S, C> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = r {
            self.stats.tx(n);
        }
        r
    }
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let std::task::Poll::Ready(Ok(n)) = r {
            self.stats.tx(n);
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
