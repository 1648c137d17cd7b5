//! The sending half of an HTTP/2 stream, either way: a [`Body`] moved into an `h2`
//! [`SendStream`] under the peer's flow control (a downstream stream's answer, an
//! upstream stream's request).

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use h2::{Reason, SendStream};

use crate::{stall::Stall, Body};

/// Moves the body into the stream: each DATA chunk once the peer's window has room
/// for it (the last one with END_STREAM, handed to `h2` at once), then the trailers;
/// stops when the peer resets the stream. `sent` counts the body bytes taken from
/// the body.
pub(crate) fn pump(
    cx: &mut Context<'_>,
    mut body: Pin<&mut Body>,
    tx: &mut SendStream<Bytes>,
    pending: &mut Option<(Bytes, bool)>,
    sent: &mut u64,
    stall: &mut Stall,
) -> Poll<()> {
    use http_body::Body as _;
    loop {
        if let Some((data, end)) = pending.take() {
            while tx.capacity() == 0 {
                match tx.poll_capacity(cx) {
                    Poll::Pending => {
                        // A peer that opens no window for a whole stall period
                        // gets the stream cancelled, which lets the other side go.
                        if stall.poll_expired(cx).is_ready() {
                            tracing::debug!("peer opened no window in time");
                            tx.send_reset(Reason::CANCEL);
                            return Poll::Ready(());
                        }
                        *pending = Some((data, end));
                        return watch_reset(cx, tx);
                    }
                    Poll::Ready(Some(Ok(0))) => {}
                    Poll::Ready(Some(Ok(_))) => break,
                    Poll::Ready(Some(Err(_)) | None) => return Poll::Ready(()),
                }
            }
            stall.progress();
            if tx.send_data(data, end).is_err() || end {
                return Poll::Ready(());
            }
            continue;
        }
        let Poll::Ready(frame) = body.as_mut().poll_frame(cx) else {
            return watch_reset(cx, tx);
        };
        match frame {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    *sent += data.len() as u64;
                    let end = body.is_end_stream();
                    // The last chunk goes at once: nothing follows it to pace, and
                    // `h2` claims the window it needs and sends it as the peer's
                    // window allows (the usual answer, one buffer, is one DATA frame
                    // with END_STREAM and no capacity round trip).
                    if data.is_empty() || end {
                        if tx.send_data(data, end).is_err() || end {
                            return Poll::Ready(());
                        }
                        continue;
                    }
                    // A claim of one byte: `send_data` raises it to the chunk, and
                    // nothing is pinned on the connection's window meanwhile.
                    tx.reserve_capacity(1);
                    *pending = Some((data, end));
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        tx.reserve_capacity(0);
                        let _ = tx.send_trailers(trailers);
                        return Poll::Ready(());
                    }
                }
            },
            Some(Err(e)) => {
                tracing::debug!(error = %e, "body failed");
                tx.send_reset(reset_reason(&*e));
                return Poll::Ready(());
            }
            None => {
                let _ = tx.send_data(Bytes::new(), true);
                return Poll::Ready(());
            }
        }
    }
}

/// Pending, unless the peer reset the stream (the task is woken when it does).
fn watch_reset(cx: &mut Context<'_>, tx: &mut SendStream<Bytes>) -> Poll<()> {
    match tx.poll_reset(cx) {
        Poll::Ready(reason) => {
            tracing::debug!(?reason, "stream reset during its body");
            Poll::Ready(())
        }
        Poll::Pending => Poll::Pending,
    }
}

/// The reason an `h2` error in `err`'s chain carries (the other side's HTTP/2
/// reset), else INTERNAL_ERROR.
fn reset_reason(err: &(dyn std::error::Error + 'static)) -> Reason {
    std::iter::successors(Some(err), |e| e.source())
        .find_map(|e| e.downcast_ref::<h2::Error>()?.reason())
        .unwrap_or(Reason::INTERNAL_ERROR)
}
