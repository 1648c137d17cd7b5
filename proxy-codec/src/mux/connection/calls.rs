//! The in-flight table of one upstream connection: request id -> the waiting slot of
//! its caller (its waker, then its answer).
//!
//! The caller inserts its slot when it appends its request to the write buffer, the
//! connection task fills it with the answer and wakes the caller, and the caller
//! takes the answer out. A caller that goes away first (its future dropped: a
//! timeout, the downstream closed) removes its slot, so a late answer finds no slot:
//! it is dropped and counted, and never reaches a later call.

use std::{
    collections::HashMap,
    future::Future,
    hash::{BuildHasherDefault, Hasher},
    pin::Pin,
    task::{Context, Poll, Waker},
};

use super::Conn;

/// What a caller gets back from its connection.
pub(in crate::mux) enum Answer<F> {
    /// The response.
    Response(F),
    /// A one-way request, appended to the write buffer.
    Queued,
    /// The connection closed (or stopped taking requests) before the request was
    /// written: safe to send again.
    NotSent,
    /// The connection closed after the request was (perhaps) written.
    Closed,
    /// The request could not be encoded (a field too long for the wire format).
    Unencodable,
    /// The response was longer than `max_frame_bytes` (declared `len`); it was
    /// skipped.
    TooLarge {
        /// The declared length.
        len: u64,
        /// The limit.
        max: usize,
    },
}

/// The slot of one request in flight.
pub(super) enum Call<F> {
    /// Not answered yet: the caller's waker once it has polled, and the batch of the
    /// write buffer its request went out in (to tell, if the connection closes,
    /// whether it was written).
    Waiting { waker: Option<Waker>, batch: u64 },
    /// Answered; the caller has not taken the answer yet.
    Done(Answer<F>),
}

/// The in-flight table.
pub(super) type Calls<F> = HashMap<u32, Call<F>, BuildHasherDefault<IdHasher>>;

/// Hashes request ids (numbered one after the other) with one multiplication that
/// spreads them over the whole word; no SipHash per call.
#[derive(Default)]
pub(super) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// The caller's wait for the answer to request `id`; dropping it before the answer
/// removes the slot.
pub(super) struct Pending<'a, F> {
    pub(super) conn: &'a Conn<F>,
    pub(super) id: u32,
    pub(super) finished: bool,
}

impl<F> Future for Pending<'_, F> {
    type Output = Answer<F>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer<F>> {
        let id = self.id;
        let mut st = self.conn.lock();
        let answer = match st.calls.get_mut(&id) {
            Some(Call::Waiting { waker, .. }) => {
                if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *waker = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
            Some(Call::Done(_)) => match st.calls.remove(&id) {
                Some(Call::Done(answer)) => answer,
                _ => Answer::Closed,
            },
            // Not reachable: only this future removes its slot once inserted.
            None => Answer::Closed,
        };
        drop(st);
        self.finished = true;
        Poll::Ready(answer)
    }
}

impl<F> Drop for Pending<'_, F> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut st = self.conn.lock();
        if let Some(Call::Waiting { .. }) = st.calls.remove(&self.id) {
            st.waiting -= 1;
            // A connection that takes no new requests ends with its last call.
            if !st.open && st.waiting == 0 {
                drop(st);
                self.conn.task.notify_one();
            }
        }
    }
}
