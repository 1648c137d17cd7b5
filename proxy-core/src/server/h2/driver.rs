//! One downstream HTTP/2 connection driven on `h2` directly: the handshake, the
//! streams (polled by the connection's own task), the keep-alive pings, and the
//! GOAWAY of a graceful shutdown.
//!
//! A stream's answer is written by the same poll that produced it: one task per
//! connection, as an event loop would run it. The first answers of a round wait for
//! one turn of the runtime, as a spawned stream's would, so that the answers of the
//! streams the same events woke leave in one write rather than one write each.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use h2::{
    server::{Connection, Handshake, SendResponse},
    Ping, PingPong, Reason, RecvStream,
};
use http::Request;
use tokio::time::{Instant, Sleep};

use super::{io::Prefixed, Shared};

enum State {
    Handshaking(Handshake<Prefixed, Bytes>),
    Serving(Connection<Prefixed, Bytes>),
    Done,
}

pin_project_lite::pin_project! {
    /// Completes when the connection does (streams left then have nothing to write
    /// to).
    pub(super) struct Driver<S, N> {
        state: State,
        // A graceful shutdown was asked for during the handshake.
        close_pending: bool,
        running: FuturesUnordered<Running<S>>,
        // The boxes of streams that ended, kept for the next streams.
        spare: Vec<Slot<S>>,
        // Answers are waiting to be written, and the task has let the other ready
        // tasks run once so that more answers join the same write.
        deferred: bool,
        new_stream: N,
        #[pin]
        keep_alive: KeepAlive,
        shared: Arc<Shared>,
    }
}

impl<S, N> Driver<S, N>
where
    S: Future<Output = ()>,
    N: FnMut(Request<RecvStream>, SendResponse<Bytes>) -> S,
{
    /// Drives `handshake`, serving each stream with `new_stream`; pings a peer that
    /// sent nothing for `interval`, closing the connection when its answer takes
    /// longer than `timeout`. The connection's `read` flag is set by every read from the
    /// peer.
    pub(super) fn new(
        handshake: Handshake<Prefixed, Bytes>,
        new_stream: N,
        interval: Duration,
        timeout: Duration,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            state: State::Handshaking(handshake),
            close_pending: false,
            running: FuturesUnordered::new(),
            spare: Vec::new(),
            deferred: false,
            new_stream,
            keep_alive: KeepAlive {
                sleep: tokio::time::sleep(interval),
                interval,
                timeout,
                ping: None,
                ping_sent: false,
                armed: false,
            },
            shared,
        }
    }

    /// Ends the connection at once: GOAWAY with `reason` and the last stream taken;
    /// the streams under way are cut off.
    pub(super) fn abrupt_shutdown(self: Pin<&mut Self>, reason: Reason) {
        let this = self.project();
        match this.state {
            State::Serving(conn) => conn.abrupt_shutdown(reason),
            // Abuse is counted on streams, which come after the handshake.
            State::Handshaking(_) | State::Done => *this.state = State::Done,
        }
    }

    /// Starts a graceful shutdown: GOAWAY, then the streams under way finish.
    pub(super) fn graceful_shutdown(self: Pin<&mut Self>) {
        let this = self.project();
        match this.state {
            State::Handshaking(_) => *this.close_pending = true,
            State::Serving(conn) => conn.graceful_shutdown(),
            State::Done => {}
        }
    }
}

impl<S, N> Future for Driver<S, N>
where
    S: Future<Output = ()>,
    N: FnMut(Request<RecvStream>, SendResponse<Bytes>) -> S,
{
    type Output = Result<(), h2::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let State::Handshaking(hs) = this.state {
            let mut conn = match std::task::ready!(Pin::new(hs).poll(cx)) {
                Ok(conn) => conn,
                Err(e) => {
                    *this.state = State::Done;
                    return Poll::Ready(Err(e));
                }
            };
            if *this.close_pending {
                conn.graceful_shutdown();
            }
            *this.keep_alive.as_mut().project().ping = conn.ping_pong();
            *this.state = State::Serving(conn);
        }
        let State::Serving(conn) = this.state else {
            return Poll::Ready(Ok(()));
        };
        // Writes of this round are gathered, and written by the last pass below.
        let hold = &this.shared.state.hold;
        hold.store(true, Ordering::Relaxed);
        loop {
            // Streams first: what they answer, the connection writes below.
            let mut answered = false;
            while let Poll::Ready(Some(slot)) = this.running.poll_next_unpin(cx) {
                answered = true;
                if this.spare.len() < SPARE_SLOTS {
                    this.spare.push(slot);
                }
            }
            if answered && !*this.deferred {
                *this.deferred = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            *this.deferred = false;
            if this
                .keep_alive
                .as_mut()
                .timed_out(cx, &this.shared.state.read)
            {
                tracing::debug!("h2 keep-alive ping unanswered, closing the connection");
                conn.abrupt_shutdown(Reason::NO_ERROR);
            }
            // A peer quiet for a keep-alive interval is pinged: its connection keeps
            // no spare stream memory meanwhile.
            if this.keep_alive.ping_sent && !this.spare.is_empty() {
                this.spare.clear();
            }
            match conn.poll_accept(cx) {
                Poll::Ready(Some(Ok((req, respond)))) => {
                    let mut slot = this.spare.pop().unwrap_or_else(|| Box::pin(None));
                    slot.set(Some((this.new_stream)(req, respond)));
                    this.running.push(Running { slot: Some(slot) });
                }
                Poll::Ready(Some(Err(e))) => {
                    hold.store(false, Ordering::Relaxed);
                    *this.state = State::Done;
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(None) => {
                    hold.store(false, Ordering::Relaxed);
                    *this.state = State::Done;
                    return Poll::Ready(Ok(()));
                }
                // Nothing more this round: one more pass, which writes what is
                // gathered (h2 flushes at the end of every poll), when there is some.
                // The bytes stay marked until written: if that pass ends early, the
                // next round's last pass writes them.
                Poll::Pending
                    if hold.swap(false, Ordering::Relaxed)
                        && this.shared.state.gathered.load(Ordering::Relaxed) => {}
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// The most stream boxes a connection keeps for its next streams: a connection
/// with this many streams at a time allocates none once warm.
const SPARE_SLOTS: usize = 16;

/// Where a stream's future lives: one box per stream at a time, reused by the
/// connection's later streams (a stream's future is a few KiB, with the request's
/// future inline: a fresh one would cost an allocation and its copy into it).
type Slot<S> = Pin<Box<Option<S>>>;

/// A stream running in its slot; hands the slot back, emptied, when it ends.
struct Running<S> {
    slot: Option<Slot<S>>,
}

impl<S: Future<Output = ()>> Future for Running<S> {
    type Output = Slot<S>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Slot<S>> {
        let Some(slot) = &mut self.slot else {
            return Poll::Pending;
        };
        if let Some(stream) = slot.as_mut().as_pin_mut() {
            std::task::ready!(stream.poll(cx));
            // Ended: its state (the stream's handles, its log line) goes now.
            slot.set(None);
        }
        match self.slot.take() {
            Some(slot) => Poll::Ready(slot),
            None => Poll::Pending,
        }
    }
}

pin_project_lite::pin_project! {
    /// Pings a quiet peer; a ping unanswered in time means the peer is gone.
    struct KeepAlive {
        #[pin]
        sleep: Sleep,
        interval: Duration,
        timeout: Duration,
        ping: Option<PingPong>,
        ping_sent: bool,
        // The sleep was polled (its timer registered to wake the task) since it was
        // last set.
        armed: bool,
    }
}

impl KeepAlive {
    /// Whether a ping went unanswered past the timeout. A peer that sent anything
    /// since the last check is alive: no ping then.
    fn timed_out(self: Pin<&mut Self>, cx: &mut Context<'_>, read: &AtomicBool) -> bool {
        let mut this = self.project();
        let Some(ping) = this.ping else {
            return false;
        };
        loop {
            if *this.ping_sent {
                match ping.poll_pong(cx) {
                    Poll::Ready(Ok(_)) => {
                        *this.ping_sent = false;
                        read.store(false, Ordering::Relaxed);
                        this.sleep.as_mut().reset(Instant::now() + *this.interval);
                        *this.armed = false;
                    }
                    // The connection failed: its own poll reports that.
                    Poll::Ready(Err(_)) => return false,
                    Poll::Pending => {
                        if !expired(this.sleep.as_mut(), this.armed, cx) {
                            return false;
                        }
                        // Once: the connection is closing.
                        *this.ping = None;
                        return true;
                    }
                }
            }
            if !expired(this.sleep.as_mut(), this.armed, cx) {
                return false;
            }
            if read.swap(false, Ordering::Relaxed) {
                this.sleep.as_mut().reset(Instant::now() + *this.interval);
                *this.armed = false;
                continue;
            }
            if ping.send_ping(Ping::opaque()).is_err() {
                return false;
            }
            *this.ping_sent = true;
            this.sleep.as_mut().reset(Instant::now() + *this.timeout);
            *this.armed = false;
        }
    }
}

/// Whether `sleep` is over. Once its timer is registered (a poll that found budget
/// left), the timer wakes the task when it fires, and a look at its state replaces
/// the poll on every pass of the connection task.
fn expired(sleep: Pin<&mut Sleep>, armed: &mut bool, cx: &mut Context<'_>) -> bool {
    if *armed && !sleep.is_elapsed() {
        return false;
    }
    let registers = tokio::task::coop::has_budget_remaining();
    let done = sleep.poll(cx).is_ready();
    *armed = registers && !done;
    done
}
