//! One multiplexed upstream connection: its shared state ([`Conn`]) and the task that
//! reads it ([`ConnTask`]).
//!
//! A caller numbers its own request (ids unique per connection), appends it to the
//! connection's write buffer and puts a waiting slot in the in-flight table
//! ([`calls`]). When nobody is writing, a call on a quiet line writes the buffer
//! itself; with other calls in flight, the connection task writes ([`write`]), so
//! the calls appended meanwhile go out in one write. The connection task reads
//! responses, fills the slot of each one's id and wakes its caller; it answers the
//! upstream's heartbeats, sends its own when the line is quiet, and finishes writes
//! the socket could not take at once. No channel per call and at most one task
//! wake-up per batch: a call costs one lock for the append, one for the answer.

mod calls;
#[cfg(test)]
mod tests;
mod write;

use std::{
    future::poll_fn,
    pin::pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::Duration,
};

use bytes::BytesMut;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite},
    sync::{Notify, Semaphore},
    time::Instant,
};

pub(super) use self::calls::Answer;
use self::{
    calls::{Call, Calls, Pending},
    write::{Out, Writer},
};
use super::{log, next_frame, skip, WRITE_HIGH_WATER};
use crate::{
    metrics::{CodecMetrics, Counters, TooLarge},
    protocol::{DecodeError, FrameKind, Protocol},
};

/// One upstream connection, shared by its callers and its task.
pub(super) struct Conn<F> {
    state: Mutex<State<F>>,
    out: Mutex<Out>,
    /// Whether it takes new requests (read without the lock).
    open: AtomicBool,
    /// `max_in_flight` calls at once; closed with the connection.
    permits: Semaphore,
    /// Wakes callers waiting for room in the write buffer.
    room: Notify,
    /// Wakes the connection task: it holds the writer now, or has an end to check.
    task: Notify,
}

/// What the lock guards.
struct State<F> {
    /// Encoded frames no writer has taken yet.
    buf: BytesMut,
    /// Batches taken from `buf` so far: a call whose batch is the current one was
    /// never written.
    batch: u64,
    /// Bytes of the batch being written (counted against the high-water mark until
    /// it is all written).
    in_writer: usize,
    writer: Writer,
    calls: Calls<F>,
    /// Calls not answered yet.
    waiting: usize,
    next_id: u32,
    /// Whether it takes new requests.
    open: bool,
    /// A caller waits for room.
    stalled: bool,
    /// A write failed: the task ends the connection.
    failed: bool,
}

/// Why a request was not appended.
enum Refused {
    Full,
    Closed,
    Unencodable,
}

// === impl Conn ===

impl<F> Conn<F> {
    /// A connection writing to `io`, taking `max_in_flight` calls at once.
    pub(super) fn new(io: Box<dyn AsyncWrite + Send + Unpin>, max_in_flight: usize) -> Self {
        Self {
            state: Mutex::new(State {
                buf: BytesMut::with_capacity(8192),
                batch: 0,
                in_writer: 0,
                writer: Writer::Free,
                calls: Calls::default(),
                waiting: 0,
                next_id: 0,
                open: true,
                stalled: false,
                failed: false,
            }),
            out: Mutex::new(Out::new(io)),
            open: AtomicBool::new(true),
            permits: Semaphore::new(max_in_flight.min(Semaphore::MAX_PERMITS)),
            room: Notify::new(),
            task: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<F>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether it takes new requests.
    pub(super) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Sends `frame` (numbered here; the caller keeps it, to send it again if it is
    /// never written) and waits for its answer: past `max_in_flight` calls and a full
    /// write buffer first. A one-way request is answered [`Answer::Queued`] once
    /// appended. Dropping the future gives the slot up.
    pub(super) async fn call<P>(&self, proto: &P, frame: &mut F, one_way: bool) -> Answer<F>
    where
        P: Protocol<Frame = F>,
    {
        // Held until the call ends, after its slot is gone.
        let _permit = if one_way {
            None
        } else {
            match self.permits.acquire().await {
                Ok(p) => Some(p),
                Err(_) => return Answer::NotSent,
            }
        };
        let mut appended = self.append(proto, frame, one_way);
        while let Err(Refused::Full) = appended {
            // Registered before the second look, so room made meanwhile wakes it.
            let mut room = pin!(self.room.notified());
            room.as_mut().enable();
            appended = self.append(proto, frame, one_way);
            if let Err(Refused::Full) = appended {
                room.await;
                appended = self.append(proto, frame, one_way);
            }
        }
        let id = match appended {
            Ok(id) => id,
            Err(Refused::Closed | Refused::Full) => return Answer::NotSent,
            Err(Refused::Unencodable) => return Answer::Unencodable,
        };
        if one_way {
            return Answer::Queued;
        }
        Pending {
            conn: self,
            id,
            finished: false,
        }
        .await
    }

    /// Numbers and appends a request (with its slot unless one-way). When nobody is
    /// writing, it writes at once if no other call is in flight, else it wakes the
    /// connection task to write the batch.
    fn append<P>(&self, proto: &P, frame: &mut F, one_way: bool) -> Result<u32, Refused>
    where
        P: Protocol<Frame = F>,
    {
        let mut st = self.lock();
        if !st.open {
            return Err(Refused::Closed);
        }
        if st.buf.len() + st.in_writer >= WRITE_HIGH_WATER {
            st.stalled = true;
            return Err(Refused::Full);
        }
        let id = st.free_id();
        proto.set_request_id(frame, u64::from(id));
        let start = st.buf.len();
        if let Err(e) = proto.encode(frame, &mut st.buf) {
            st.buf.truncate(start);
            tracing::debug!(protocol = proto.name(), error = %e, "request could not be encoded");
            return Err(Refused::Unencodable);
        }
        // A call on a quiet line goes out at once from here; with calls in flight,
        // more are likely on their way, and the task writes them all in one go.
        let quiet = st.waiting == 0;
        if !one_way {
            let batch = st.batch;
            st.calls.insert(id, Call::Waiting { waker: None, batch });
            st.waiting += 1;
        }
        let claim = st.writer == Writer::Free;
        if claim {
            st.writer = if quiet { Writer::Caller } else { Writer::Task };
        }
        drop(st);
        match (claim, quiet) {
            (true, true) => self.write_now(),
            (true, false) => self.task.notify_one(),
            (false, _) => {}
        }
        Ok(id)
    }

    /// Appends a frame of the connection task's own (a heartbeat, numbered when
    /// `number`, or an answer to one); the task writes it.
    fn push<P>(&self, proto: &P, frame: &mut F, number: bool)
    where
        P: Protocol<Frame = F>,
    {
        let mut st = self.lock();
        if number {
            let id = st.free_id();
            proto.set_request_id(frame, u64::from(id));
        }
        let start = st.buf.len();
        if proto.encode(frame, &mut st.buf).is_err() {
            st.buf.truncate(start);
        } else if st.writer == Writer::Free {
            st.writer = Writer::Task;
        }
    }

    /// Hands `answer` to the caller waiting for `id`; `false` if none is.
    fn complete(&self, id: u32, answer: Answer<F>) -> bool {
        let mut st = self.lock();
        let Some(call) = st.calls.get_mut(&id) else {
            return false;
        };
        let Call::Waiting { waker, .. } = call else {
            return false;
        };
        let waker = waker.take();
        *call = Call::Done(answer);
        st.waiting -= 1;
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Takes no new requests: callers waiting for a slot or for room go elsewhere.
    fn stop_taking(&self) {
        self.lock().open = false;
        self.open.store(false, Ordering::Release);
        self.permits.close();
        self.room.notify_waiters();
    }

    /// The connection is gone: every call still waiting fails, as never sent if its
    /// request was still in the buffer.
    fn close(&self) {
        self.stop_taking();
        let mut st = self.lock();
        let current = st.batch;
        let mut wakers = Vec::new();
        for call in st.calls.values_mut() {
            if let Call::Waiting { waker, batch } = call {
                wakers.extend(waker.take());
                *call = Call::Done(if *batch == current {
                    Answer::NotSent
                } else {
                    Answer::Closed
                });
            }
        }
        st.waiting = 0;
        st.buf.clear();
        drop(st);
        for w in wakers {
            w.wake();
        }
    }
}

impl<F> State<F> {
    /// The next id no call in flight holds.
    fn free_id(&mut self) -> u32 {
        loop {
            self.next_id = self.next_id.wrapping_add(1);
            if !self.calls.contains_key(&self.next_id) {
                return self.next_id;
            }
        }
    }
}

/// Closes its connection when dropped.
struct CloseOnDrop<'a, F>(&'a Conn<F>);

impl<F> Drop for CloseOnDrop<'_, F> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// One upstream connection's task: reads responses and heartbeats, sends its own
/// heartbeats, finishes writes handed to it.
pub(super) struct ConnTask<P> {
    pub(super) protocol: Arc<P>,
    pub(super) metrics: Arc<CodecMetrics>,
    pub(super) max_frame: usize,
    pub(super) heartbeat: Option<Duration>,
}

impl<P: Protocol> ConnTask<P> {
    pub(super) async fn run<R>(self, conn: Arc<Conn<P::Frame>>, mut rd: R)
    where
        R: AsyncRead + Unpin + Send,
    {
        let proto = &*self.protocol;
        let counters = self.metrics.protocol(proto.name());
        // Whatever ends this task (a panic included) fails the calls waiting here.
        let _closing = CloseOnDrop(&conn);
        let mut rbuf = BytesMut::with_capacity(8192);
        let mut last_read = Instant::now();
        let mut pinged_at: Option<Instant> = None;
        let mut skipping: u64 = 0;
        // Heartbeats on their own timer, so they go out at the interval asked.
        let every = self.heartbeat.unwrap_or(Duration::from_secs(86_400 * 365));
        let beat = tokio::time::sleep_until(last_read + every);
        tokio::pin!(beat);
        'conn: loop {
            let writes = {
                let st = conn.lock();
                let done = !st.open && st.waiting == 0 && st.buf.is_empty();
                if st.failed || (done && st.writer == Writer::Free) {
                    break;
                }
                st.writer == Writer::Task
            };
            if rbuf.capacity() - rbuf.len() < 4096 {
                rbuf.reserve(8192);
            }
            tokio::select! {
                biased;
                res = rd.read_buf(&mut rbuf) => {
                    if matches!(res, Ok(0) | Err(_)) {
                        break;
                    }
                    last_read = Instant::now();
                    pinged_at = None;
                    loop {
                        if skipping > 0 {
                            skip(&mut rbuf, &mut skipping);
                            if skipping > 0 {
                                break;
                            }
                        }
                        let frame = match next_frame(proto, &mut rbuf, self.max_frame) {
                            Ok(Some(f)) => f,
                            Ok(None) => break,
                            Err(DecodeError::TooLarge { len, max }) => {
                                Counters::inc(&counters.oversized_frames);
                                // Its header names its call: only that call fails; the
                                // body is skipped as it arrives and the line carries on.
                                let Some(head) = proto.frame_head(&rbuf) else {
                                    tracing::debug!(protocol = proto.name(), len, "oversized frame from upstream; closing");
                                    break 'conn;
                                };
                                if head.kind == FrameKind::Response {
                                    counters.count_too_large(TooLarge::UpstreamResponse);
                                    log::too_large(proto.name(), TooLarge::UpstreamResponse, len, max);
                                    if !conn.complete(head.request_id as u32, Answer::TooLarge { len, max }) {
                                        Counters::inc(&counters.unknown_response_ids);
                                    }
                                } else {
                                    tracing::debug!(protocol = proto.name(), len, max, "oversized frame from upstream; skipping it");
                                }
                                skipping = len;
                                continue;
                            }
                            Err(e) => {
                                Counters::inc(&counters.malformed_frames);
                                tracing::debug!(protocol = proto.name(), error = %e, "bad frame from upstream; closing");
                                break 'conn;
                            }
                        };
                        let mut frame = match proto.decode(frame) {
                            Ok(f) => f,
                            Err(e) => {
                                Counters::inc(&counters.malformed_frames);
                                tracing::debug!(protocol = proto.name(), error = %e, "bad frame from upstream; closing");
                                break 'conn;
                            }
                        };
                        if proto.is_goaway(&frame) && conn.is_open() {
                            tracing::debug!(protocol = proto.name(), "upstream is going away; no new requests here");
                            conn.stop_taking();
                        }
                        match proto.kind(&frame) {
                            FrameKind::Response => {
                                let id = proto.request_id(&frame) as u32;
                                // The caller may have given up: its slot is gone then.
                                if !conn.complete(id, Answer::Response(frame)) {
                                    Counters::inc(&counters.unknown_response_ids);
                                }
                            }
                            FrameKind::Heartbeat => {
                                Counters::inc(&counters.heartbeats);
                                frame = proto.heartbeat_reply(&frame);
                                conn.push(proto, &mut frame, false);
                            }
                            FrameKind::HeartbeatReply => {}
                            FrameKind::Request | FrameKind::OneWay => Counters::inc(&counters.unexpected_frames),
                        }
                    }
                }
                res = poll_fn(|cx| conn.poll_write_out(cx, usize::MAX)), if writes => {
                    if let Err(e) = res {
                        tracing::debug!(protocol = proto.name(), error = %e, "upstream write failed; closing");
                        break;
                    }
                }
                () = conn.task.notified() => {}
                () = &mut beat, if self.heartbeat.is_some() => {
                    let now = Instant::now();
                    match pinged_at {
                        // Nothing heard for an interval after our ping: dead.
                        Some(at) if now >= at + every => {
                            tracing::debug!(protocol = proto.name(), "upstream did not answer a heartbeat; closing");
                            break;
                        }
                        Some(at) => beat.as_mut().reset(at + every),
                        // Quiet for an interval: ping.
                        None if now >= last_read + every => {
                            if let Some(mut ping) = proto.heartbeat() {
                                conn.push(proto, &mut ping, true);
                                pinged_at = Some(now);
                            }
                            beat.as_mut().reset(now + every);
                        }
                        // Heard from since: due an interval after the last read.
                        None => beat.as_mut().reset(last_read + every),
                    }
                }
            }
        }
        // Only the calls in flight here fail; those never written go elsewhere.
        conn.close();
        let _ = poll_fn(|cx| conn.poll_shutdown(cx)).await;
    }
}
