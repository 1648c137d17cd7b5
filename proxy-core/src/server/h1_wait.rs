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

/// A step of the wait.
pub(super) enum Waited<T> {
    /// The answer; `None` once the client is gone.
    Answer(Option<T>),
    /// An interim answer, to write before the final one.
    Interim(Response<()>),
}

pin_project_lite::pin_project! {
    /// Waits for `answer`, watching the client's side of the connection meanwhile
    /// when there is one to watch (`read`): `None` once the client closed it (or it
    /// failed) first, dropping `answer`. Bytes the client sends meanwhile (a
    /// pipelined request) are kept in `buf` for the next head; past the head size
    /// limit the answer alone is waited for. The interim answers from `interims`
    /// come before the answer, those that come with it included. A future of its
    /// own holding `answer` inline, so that the connection's future grows by a few
    /// references only.
    pub(super) struct UnlessClientGone<'a, F>
    where
        F: Future,
    {
        #[pin]
        answer: F,
        // The answer, once it came, while interim answers that came with it go first
        // (boxed: the connection's future keeps room for it only while it is rare).
        came: Option<Box<F::Output>>,
        finished: bool,
        read: Option<&'a mut ReadHalf>,
        buf: &'a mut BytesMut,
        ctx: &'a ConnCtx,
        interims: Option<&'a mut InterimAnswers>,
    }
}

impl<'a, F: Future> UnlessClientGone<'a, F> {
    pub(super) fn new(
        read: Option<&'a mut ReadHalf>,
        buf: &'a mut BytesMut,
        ctx: &'a ConnCtx,
        interims: Option<&'a mut InterimAnswers>,
        answer: F,
    ) -> Self {
        Self {
            answer,
            came: None,
            finished: false,
            read,
            buf,
            ctx,
            interims,
        }
    }

    /// The next step; not to be polled again after [`Waited::Answer`].
    pub(super) fn poll_step(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Waited<F::Output>> {
        let this = self.project();
        let mut interims = this.interims.as_deref_mut();
        let mut next_interim = |cx: &mut std::task::Context<'_>| match interims.as_deref_mut() {
            Some(interims) => interims.poll_next(cx),
            None => Poll::Pending,
        };
        if *this.finished {
            if let Poll::Ready(head) = next_interim(cx) {
                return Poll::Ready(Waited::Interim(head));
            }
            return Poll::Ready(Waited::Answer(this.came.take().map(|out| *out)));
        }
        let answer = this.answer.poll(cx);
        if let Poll::Ready(head) = next_interim(cx) {
            if let Poll::Ready(out) = answer {
                *this.finished = true;
                *this.came = Some(Box::new(out));
            }
            return Poll::Ready(Waited::Interim(head));
        }
        if let Poll::Ready(out) = answer {
            return Poll::Ready(Waited::Answer(Some(out)));
        }
        if let Some(read) = this.read.as_deref_mut() {
            let limit = this.ctx.limits.max_header_bytes.as_usize();
            while this.buf.len() < limit {
                match std::task::ready!(read.poll_read_lent(cx, this.buf)) {
                    Ok(0) | Err(_) => return Poll::Ready(Waited::Answer(None)),
                    Ok(n) => this.ctx.stats.count_rx(n),
                }
            }
        }
        Poll::Pending
    }
}

/// Waits for the answer of `waiting`, writing the interim answers that come before
/// it to the client (`write`): `None` once the client is gone.
pub(super) async fn answer<F: Future>(
    mut waiting: Pin<&mut UnlessClientGone<'_, F>>,
    write: &mut WriteHalf,
    ctx: &ConnCtx,
) -> Option<F::Output> {
    loop {
        let step = std::future::poll_fn(|cx| waiting.as_mut().poll_step(cx)).await;
        let interim = match step {
            Waited::Answer(answer) => return answer,
            Waited::Interim(interim) => interim,
        };
        // Rare: boxed, so that the connection's future keeps no room for it.
        Box::pin(write_interim(
            write,
            interim,
            ctx.limits.stream_idle_timeout,
        ))
        .await?;
    }
}

/// Writes an interim answer's head to the client; `None` when that failed.
async fn write_interim(
    write: &mut WriteHalf,
    interim: Response<()>,
    stall: Duration,
) -> Option<()> {
    let mut wbuf = BytesMut::new();
    head::encode_response_reframed(
        &mut wbuf,
        interim.status(),
        interim.headers(),
        Framing::Empty,
        false,
        false,
    );
    flush(write, &mut wbuf, stall).await.ok()
}
