//! The HTTP/1.1 connection's wait for a request's answer: the client's side watched
//! meanwhile (a client gone drops the request), and the interim (1xx) answers that
//! come first written to it as they come.

use std::{future::Future, pin::Pin, task::Poll, time::Duration};

use bytes::BytesMut;
use http::Response;

use super::conn::ConnCtx;
use crate::{
    http1::{
        head::{self, Framing},
        send::flush,
    },
    informational::InterimAnswers,
    net::{ReadHalf, WriteHalf},
};

/// The write of an interim answer, handing the connection's write half back when
/// done (`None`: the client is gone).
type InterimWrite<'a> = Pin<Box<dyn Future<Output = Option<&'a mut WriteHalf>> + Send + 'a>>;

/// Where interim answers come from and go, for a client that takes them.
pub(super) struct Interims<'a> {
    pub(super) from: &'a mut InterimAnswers,
    /// `None` while an interim answer is being written.
    pub(super) to: Option<&'a mut WriteHalf>,
}

pin_project_lite::pin_project! {
    /// Waits for `answer`, watching the client's side of the connection meanwhile
    /// when there is one to watch (`read`): `None` once the client closed it (or it
    /// failed) first, dropping `answer`. Bytes the client sends meanwhile (a
    /// pipelined request) are kept in `buf` for the next head; past the head size
    /// limit the answer alone is waited for. The interim answers that come first
    /// are written as they come, those that come with the answer included. A
    /// future of its own holding `answer` inline, so that the connection's future
    /// grows by a few references only.
    pub(super) struct UnlessClientGone<'a, F>
    where
        F: Future,
    {
        #[pin]
        answer: F,
        read: Option<&'a mut ReadHalf>,
        buf: &'a mut BytesMut,
        ctx: &'a ConnCtx,
        interims: Option<Interims<'a>>,
        // Rare, so boxed: an interim answer being written, and the answer that came
        // while interim answers were still to be written.
        writing: Option<InterimWrite<'a>>,
        came: Option<Box<F::Output>>,
    }
}

impl<'a, F: Future> UnlessClientGone<'a, F> {
    pub(super) fn new(
        read: Option<&'a mut ReadHalf>,
        buf: &'a mut BytesMut,
        ctx: &'a ConnCtx,
        interims: Option<Interims<'a>>,
        answer: F,
    ) -> Self {
        Self {
            answer,
            read,
            buf,
            ctx,
            interims,
            writing: None,
            came: None,
        }
    }
}

impl<F: Future> Future for UnlessClientGone<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(interims) = this.interims.as_mut() {
            let stall = this.ctx.limits.stream_idle_timeout;
            loop {
                // An interim answer being written goes on first.
                if let Some(writing) = this.writing.as_mut() {
                    match writing.as_mut().poll(cx) {
                        Poll::Pending => break,
                        Poll::Ready(None) => return Poll::Ready(None),
                        Poll::Ready(Some(write)) => {
                            interims.to = Some(write);
                            *this.writing = None;
                        }
                    }
                }
                // Then the next, if one came.
                let Poll::Ready(interim) = interims.from.poll_next(cx) else {
                    break;
                };
                let Some(write) = interims.to.take() else {
                    break;
                };
                *this.writing = Some(Box::pin(write_interim(write, interim, stall)));
            }
            if let Some(out) = this.came.take() {
                if this.writing.is_none() {
                    return Poll::Ready(Some(*out));
                }
                *this.came = Some(out);
                return Poll::Pending;
            }
            if let Poll::Ready(out) = this.answer.poll(cx) {
                if this.writing.is_none() && !interims.from.may_have_waiting() {
                    return Poll::Ready(Some(out));
                }
                // The interim answers that came with it go first: round again.
                *this.came = Some(Box::new(out));
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        } else if let Poll::Ready(out) = this.answer.poll(cx) {
            return Poll::Ready(Some(out));
        }
        if let Some(read) = this.read.as_deref_mut() {
            let limit = this.ctx.limits.max_header_bytes.as_usize();
            while this.buf.len() < limit {
                match std::task::ready!(read.poll_read_lent(cx, this.buf)) {
                    Ok(0) | Err(_) => return Poll::Ready(None),
                    Ok(n) => this.ctx.stats.count_rx(n),
                }
            }
        }
        Poll::Pending
    }
}

/// Writes an interim answer's head to the client: the write half back, or `None`
/// when that failed.
async fn write_interim(
    write: &mut WriteHalf,
    interim: Response<()>,
    stall: Duration,
) -> Option<&mut WriteHalf> {
    let mut wbuf = BytesMut::new();
    // No framing fields: an interim answer has no content (they were left out).
    head::encode_response(
        &mut wbuf,
        interim.status(),
        interim.headers(),
        Framing::Empty,
        false,
    );
    flush(write, &mut wbuf, stall).await.ok()?;
    Some(write)
}
