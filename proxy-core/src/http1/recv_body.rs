//! A body read straight off an HTTP/1.1 connection, which gives the connection back
//! when the body ends: to the upstream pool, or to the downstream connection loop.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use tokio::sync::oneshot;

use super::decode::{Decoder, Step};
use crate::{
    net::ReadHalf,
    stall::{BodyStalled, Stall},
    upstream::h1::H1Conn,
    BoxError,
};

const READ_CHUNK: usize = 16 * 1024;

/// The read side of a downstream connection while a request body streams, handed
/// back to the connection loop when the body is done or dropped.
#[derive(Debug)]
pub(crate) struct Returned {
    pub(crate) read: ReadHalf,
    pub(crate) buf: BytesMut,
    /// The body was read to its end, so the next request starts at `buf`.
    pub(crate) complete: bool,
}

#[derive(Debug)]
enum Source {
    Upstream(Box<H1Conn>),
    /// Boxed: a request body is rarer than a bodiless request, and every `Body` (and
    /// so every request's future) is as large as its largest variant.
    Downstream(Box<Downstream>),
}

/// The downstream connection's read side, lent to a request body until it ends.
#[derive(Debug)]
struct Downstream {
    read: ReadHalf,
    buf: BytesMut,
    back: oneshot::Sender<Returned>,
    /// The listener's counters: body bytes count as received.
    stats: std::sync::Arc<crate::metrics::ConnStats>,
}

/// A streaming HTTP/1.1 message body.
#[derive(Debug)]
pub(crate) struct RecvBody {
    source: Option<Source>,
    decoder: Decoder,
    /// How long a read may wait for bytes before the body fails. Its timer is made
    /// the first time a read has to wait: a body that arrives whole never makes one.
    stall: Stall,
}

impl RecvBody {
    pub(crate) fn upstream(conn: Box<H1Conn>, decoder: Decoder, stall: Duration) -> Self {
        Self {
            source: Some(Source::Upstream(conn)),
            decoder,
            stall: Stall::new(stall),
        }
    }

    pub(crate) fn downstream(
        read: ReadHalf,
        buf: BytesMut,
        decoder: Decoder,
        stall: Duration,
        stats: std::sync::Arc<crate::metrics::ConnStats>,
    ) -> (Self, oneshot::Receiver<Returned>) {
        let (back, rx) = oneshot::channel();
        let source = Some(Source::Downstream(Box::new(Downstream {
            read,
            buf,
            back,
            stats,
        })));
        (
            Self {
                source,
                decoder,
                stall: Stall::new(stall),
            },
            rx,
        )
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        self.source.is_none() || self.decoder.is_done()
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        match self.decoder.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }

    fn finish(&mut self, complete: bool) {
        match self.source.take() {
            Some(Source::Upstream(conn)) => conn.release(complete),
            Some(Source::Downstream(d)) => {
                let Downstream {
                    read, buf, back, ..
                } = *d;
                let _ = back.send(Returned {
                    read,
                    buf,
                    complete,
                });
            }
            None => {}
        }
    }

    pub(crate) fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let (io, buf): (Pin<&mut (dyn tokio::io::AsyncRead + Unpin)>, &mut BytesMut) =
                match &mut this.source {
                    None => return Poll::Ready(None),
                    Some(Source::Upstream(conn)) => {
                        let conn = &mut **conn;
                        (Pin::new(&mut conn.stream), &mut conn.buf)
                    }
                    Some(Source::Downstream(d)) => {
                        let d = &mut **d;
                        (Pin::new(&mut d.read), &mut d.buf)
                    }
                };
            let step = match this.decoder.decode(buf) {
                Ok(Step::NeedMore) => {
                    buf.reserve(READ_CHUNK);
                    match tokio_util::io::poll_read_buf(io, cx, buf) {
                        Poll::Pending => {
                            if this.stall.poll_expired(cx).is_ready() {
                                this.finish(false);
                                return Poll::Ready(Some(Err(BodyStalled.into())));
                            }
                            return Poll::Pending;
                        }
                        Poll::Ready(Ok(0)) => this.decoder.eof(),
                        Poll::Ready(Ok(n)) => {
                            match &this.source {
                                Some(Source::Downstream(d)) => d.stats.count_rx(n),
                                Some(Source::Upstream(c)) => c.count_rx(n),
                                None => {}
                            }
                            this.stall.progress();
                            continue;
                        }
                        Poll::Ready(Err(e)) => {
                            this.finish(false);
                            return Poll::Ready(Some(Err(e.into())));
                        }
                    }
                }
                other => other,
            };
            return match step {
                Ok(Step::Data(b)) => {
                    if this.decoder.is_done() {
                        this.finish(true);
                    }
                    Poll::Ready(Some(Ok(Frame::data(b))))
                }
                Ok(Step::Trailers(t)) => {
                    this.finish(true);
                    Poll::Ready(Some(Ok(Frame::trailers(t))))
                }
                Ok(Step::Done) => {
                    this.finish(true);
                    Poll::Ready(None)
                }
                Ok(Step::NeedMore) => continue,
                Err(e) => {
                    this.finish(false);
                    Poll::Ready(Some(Err(e.into())))
                }
            };
        }
    }
}

impl Drop for RecvBody {
    fn drop(&mut self) {
        let complete = self.decoder.is_done();
        self.finish(complete);
    }
}
