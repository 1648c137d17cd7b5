//! The bidirectional copy of the TCP proxy: one task polls both directions, an idle
//! timer re-armed on every byte, half-close passed on (EOF on one side shuts down
//! writing on the other while the reverse direction goes on).

use std::{
    future::{poll_fn, Future as _},
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};

use crate::{metrics::Counter, TcpProxyError};

/// One direction's state.
struct Half {
    buf: Box<[u8]>,
    pos: usize,
    cap: usize,
    eof: bool,
    need_flush: bool,
    done: bool,
    bytes: u64,
}

impl Half {
    fn new(size: usize) -> Self {
        Self {
            buf: vec![0; size].into_boxed_slice(),
            pos: 0,
            cap: 0,
            eof: false,
            need_flush: false,
            done: false,
            bytes: 0,
        }
    }

    /// Moves bytes from `r` to `w` until both would block or the direction is done.
    /// Sets `progress` when any byte moved or the direction finished.
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut r: Pin<&mut R>,
        mut w: Pin<&mut W>,
        counter: &Counter,
        progress: &mut bool,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        loop {
            if self.pos == self.cap && !self.eof {
                let mut rb = ReadBuf::new(&mut self.buf);
                match r.as_mut().poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        let n = rb.filled().len();
                        *progress = true;
                        if n == 0 {
                            self.eof = true;
                        } else {
                            self.pos = 0;
                            self.cap = n;
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        if self.need_flush {
                            std::task::ready!(w.as_mut().poll_flush(cx))?;
                            self.need_flush = false;
                        }
                        return Poll::Pending;
                    }
                }
            }
            while self.pos < self.cap {
                let n =
                    std::task::ready!(w.as_mut().poll_write(cx, &self.buf[self.pos..self.cap]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.pos += n;
                self.bytes += n as u64;
                counter.add(n as u64);
                self.need_flush = true;
                *progress = true;
            }
            if self.eof && self.pos == self.cap {
                // Passes the half-close on: the peer sees EOF after every byte.
                std::task::ready!(w.as_mut().poll_shutdown(cx))?;
                self.done = true;
                *progress = true;
                return Poll::Ready(Ok(()));
            }
        }
    }
}

/// What a finished copy moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// Bytes from the downstream to the upstream.
    pub up: u64,
    /// Bytes from the upstream to the downstream.
    pub down: u64,
}

/// Copies between `down` and `up` until both directions ended, one side failed, or
/// no byte moved for `idle`.
///
/// # Errors
/// [`TcpProxyError::Io`] or [`TcpProxyError::IdleTimeout`].
pub async fn bidirectional<D, U>(
    down: &mut D,
    up: &mut U,
    idle: Duration,
    buffer: usize,
    counters: (&Counter, &Counter),
) -> Result<Copied, TcpProxyError>
where
    D: AsyncRead + AsyncWrite + Unpin + ?Sized,
    U: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let mut to_up = Half::new(buffer);
    let mut to_down = Half::new(buffer);
    let mut timer: Pin<Box<Sleep>> = Box::pin(tokio::time::sleep(idle));
    poll_fn(|cx| {
        let mut progress = false;
        let a = to_up
            .poll_copy(
                cx,
                Pin::new(&mut *down),
                Pin::new(&mut *up),
                counters.0,
                &mut progress,
            )
            .map_err(TcpProxyError::Io)?;
        let b = to_down
            .poll_copy(
                cx,
                Pin::new(&mut *up),
                Pin::new(&mut *down),
                counters.1,
                &mut progress,
            )
            .map_err(TcpProxyError::Io)?;
        if a.is_ready() && b.is_ready() {
            return Poll::Ready(Ok(Copied {
                up: to_up.bytes,
                down: to_down.bytes,
            }));
        }
        if progress {
            timer.as_mut().reset(Instant::now() + idle);
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(TcpProxyError::IdleTimeout)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn copies_both_ways_with_half_close() {
        let (mut client, mut down) = tokio::io::duplex(64);
        let (mut up, mut server) = tokio::io::duplex(64);
        let (c1, c2) = (Counter::default(), Counter::default());
        let copy = async {
            bidirectional(&mut down, &mut up, Duration::from_secs(5), 16, (&c1, &c2)).await
        };
        let (mut client_r, mut client_w) = tokio::io::split(&mut client);
        let peers = async {
            let write = async {
                client_w.write_all(&[7u8; 1000]).await.unwrap();
                client_w.shutdown().await.unwrap();
            };
            let read = async {
                let mut got = Vec::new();
                server.read_to_end(&mut got).await.unwrap();
                assert_eq!(got.len(), 1000);
                // The reverse direction still works after the half-close.
                server.write_all(b"reply after half-close").await.unwrap();
                server.shutdown().await.unwrap();
            };
            tokio::join!(write, read);
            let mut back = Vec::new();
            client_r.read_to_end(&mut back).await.unwrap();
            assert_eq!(back, b"reply after half-close");
        };
        let (copied, ()) = tokio::join!(copy, peers);
        let copied = copied.unwrap();
        assert_eq!((copied.up, copied.down), (1000, 22));
        assert_eq!((c1.get(), c2.get()), (1000, 22));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timeout_fires() {
        let (_client, mut down) = tokio::io::duplex(64);
        let (mut up, _server) = tokio::io::duplex(64);
        let (c1, c2) = (Counter::default(), Counter::default());
        let r = bidirectional(&mut down, &mut up, Duration::from_secs(3), 16, (&c1, &c2)).await;
        assert!(matches!(r, Err(TcpProxyError::IdleTimeout)));
    }
}
