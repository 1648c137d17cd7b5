//! The stream the inner connection service gets: the decrypted TLS stream, preceded
//! by the early data read during the handshake, and watched for the read that
//! retires a connection after a rotation ([`Retirement`]).

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::rotation::Retirement;

/// A TLS connection's decrypted stream as the inner service sees it. Reads yield
/// `early` (0-RTT bytes, possibly none) first, then `inner`; any read bringing bytes
/// tells the [`Retirement`]. Writes pass through.
#[derive(Debug)]
pub(crate) struct Decrypted<S> {
    early: Bytes,
    inner: S,
    retirement: Retirement,
}

impl<S> Decrypted<S> {
    pub(crate) fn new(early: Bytes, inner: S, retirement: Retirement) -> Self {
        Self {
            early,
            inner,
            retirement,
        }
    }

    /// The parts, for a hot upgrade's hand-over (`handover.rs`).
    pub(crate) fn into_parts(self) -> (Bytes, S, Retirement) {
        (self.early, self.inner, self.retirement)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Decrypted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.early.has_remaining() {
            let n = this.early.len().min(buf.remaining());
            buf.put_slice(&this.early[..n]);
            this.early.advance(n);
            this.retirement.on_read();
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.retirement.on_read();
        }
        res
    }
}

crate::forward_write::forward_async_write!(Decrypted<S>, inner);

/// A closed stream: the placeholder left in `Connection::stream` while the real one
/// is being handshaken.
#[derive(Debug)]
pub(crate) struct Closed;

impl AsyncRead for Closed {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Closed {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::ErrorKind::NotConnected.into()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn early_bytes_come_first_and_writes_pass_through() {
        let (mut peer, ours) = tokio::io::duplex(64);
        let (retirement, _retire) = Retirement::new();
        let mut s = Decrypted::new(Bytes::from_static(b"early "), ours, retirement);
        peer.write_all(b"late").await.unwrap();
        let mut got = [0u8; 10];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"early late");
        s.write_all(b"reply").await.unwrap();
        let mut back = [0u8; 5];
        peer.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"reply");
    }
}
