//! One multiplexed upstream connection: a task that owns the socket and the table of
//! requests in flight on it, numbers requests itself, matches responses by id,
//! answers the upstream's heartbeats and sends its own when the line is quiet.

use std::{collections::HashMap, sync::Arc, time::Duration};

use bytes::BytesMut;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    sync::{mpsc, oneshot},
    time::Instant,
};

use super::{next_frame, skip, WRITE_HIGH_WATER};
use crate::{
    metrics::{CodecMetrics, Counters},
    protocol::{DecodeError, FrameKind, Protocol},
};

/// How often a connection forgets requests whose callers gave up (timed out).
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// A request handed to a connection's task.
pub(super) struct Outgoing<F> {
    pub(super) frame: F,
    pub(super) reply: Option<oneshot::Sender<Answer<F>>>,
}

/// What a connection's task hands back to a caller.
pub(super) enum Answer<F> {
    /// The response.
    Response(F),
    /// The connection closed before the request was written: safe to send again.
    NotSent(F),
    /// The response was longer than `max_frame_bytes` (declared `len`); it was
    /// skipped.
    TooLarge {
        /// The declared length.
        len: u64,
        /// The limit.
        max: usize,
    },
}

/// One upstream connection's task.
pub(super) struct ConnTask<P> {
    pub(super) protocol: Arc<P>,
    pub(super) metrics: Arc<CodecMetrics>,
    pub(super) max_frame: usize,
    pub(super) max_in_flight: usize,
    pub(super) heartbeat: Option<Duration>,
}

impl<P: Protocol> ConnTask<P> {
    pub(super) async fn run<R, W>(
        self,
        mut rd: R,
        mut wr: W,
        mut rx: mpsc::Receiver<Outgoing<P::Frame>>,
    ) where
        R: AsyncRead + Unpin + Send,
        W: AsyncWrite + Unpin + Send,
    {
        let proto = &*self.protocol;
        let counters = self.metrics.protocol(proto.name());
        let mut pending: HashMap<u32, oneshot::Sender<Answer<P::Frame>>> = HashMap::new();
        let mut next_id: u32 = 0;
        let mut rbuf = BytesMut::with_capacity(8192);
        let mut wbuf = BytesMut::with_capacity(8192);
        let mut accepting = true;
        let mut last_read = Instant::now();
        let mut pinged_at: Option<Instant> = None;
        let mut skipping: u64 = 0;
        let mut prune = tokio::time::interval(PRUNE_EVERY);
        prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Heartbeats on their own timer, so they go out at the interval asked (a
        // coarser tick would round it up to the next tick after the quiet interval).
        let every = self.heartbeat.unwrap_or(Duration::from_secs(86_400 * 365));
        let beat = tokio::time::sleep_until(last_read + every);
        tokio::pin!(beat);
        'conn: loop {
            if !accepting && pending.is_empty() && wbuf.is_empty() {
                break;
            }
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
                                tracing::debug!(protocol = proto.name(), len, max, "oversized frame from upstream; skipping it");
                                if head.kind == FrameKind::Response {
                                    match pending.remove(&(head.request_id as u32)) {
                                        Some(tx) => drop(tx.send(Answer::TooLarge { len, max })),
                                        None => Counters::inc(&counters.unknown_response_ids),
                                    }
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
                        let frame = match proto.decode(frame) {
                            Ok(f) => f,
                            Err(e) => {
                                Counters::inc(&counters.malformed_frames);
                                tracing::debug!(protocol = proto.name(), error = %e, "bad frame from upstream; closing");
                                break 'conn;
                            }
                        };
                        if proto.is_goaway(&frame) && accepting {
                            tracing::debug!(protocol = proto.name(), "upstream is going away; no new requests here");
                            accepting = false;
                            rx.close();
                        }
                        match proto.kind(&frame) {
                            FrameKind::Response => {
                                let id = proto.request_id(&frame) as u32;
                                match pending.remove(&id) {
                                    // The caller may have given up; nothing to do then.
                                    Some(tx) => drop(tx.send(Answer::Response(frame))),
                                    None => Counters::inc(&counters.unknown_response_ids),
                                }
                            }
                            FrameKind::Heartbeat => {
                                Counters::inc(&counters.heartbeats);
                                let _ = proto.encode(&proto.heartbeat_reply(&frame), &mut wbuf);
                            }
                            FrameKind::HeartbeatReply => {}
                            FrameKind::Request | FrameKind::OneWay => Counters::inc(&counters.unexpected_frames),
                        }
                    }
                }
                msg = rx.recv(), if accepting && pending.len() < self.max_in_flight && wbuf.len() < WRITE_HIGH_WATER => {
                    match msg {
                        None => accepting = false,
                        Some(out) => {
                            self.enqueue(out, &mut pending, &mut next_id, &mut wbuf);
                            while pending.len() < self.max_in_flight && wbuf.len() < WRITE_HIGH_WATER / 16 {
                                match rx.try_recv() {
                                    Ok(out) => self.enqueue(out, &mut pending, &mut next_id, &mut wbuf),
                                    Err(_) => break,
                                }
                            }
                        }
                    }
                }
                res = wr.write_buf(&mut wbuf), if !wbuf.is_empty() => {
                    if matches!(res, Ok(0) | Err(_)) {
                        break;
                    }
                }
                _ = prune.tick() => {
                    pending.retain(|_, tx| !tx.is_closed());
                }
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
                                next_id = next_id.wrapping_add(1);
                                proto.set_request_id(&mut ping, u64::from(next_id));
                                let _ = proto.encode(&ping, &mut wbuf);
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
        // Dropping `pending` fails exactly the requests written on this connection;
        // those still queued go back to their callers to be sent elsewhere.
        rx.close();
        while let Ok(out) = rx.try_recv() {
            if let Some(reply) = out.reply {
                let _ = reply.send(Answer::NotSent(out.frame));
            }
        }
        drop(pending);
        let _ = wr.shutdown().await;
    }

    fn enqueue(
        &self,
        out: Outgoing<P::Frame>,
        pending: &mut HashMap<u32, oneshot::Sender<Answer<P::Frame>>>,
        next_id: &mut u32,
        wbuf: &mut BytesMut,
    ) {
        let proto = &*self.protocol;
        let Outgoing { mut frame, reply } = out;
        if reply.as_ref().is_some_and(|r| r.is_closed()) {
            return;
        }
        let id = loop {
            *next_id = next_id.wrapping_add(1);
            if !pending.contains_key(next_id) {
                break *next_id;
            }
        };
        proto.set_request_id(&mut frame, u64::from(id));
        let start = wbuf.len();
        if let Err(e) = proto.encode(&frame, wbuf) {
            wbuf.truncate(start);
            tracing::debug!(protocol = proto.name(), error = %e, "request could not be encoded");
            return;
        }
        if let Some(reply) = reply {
            pending.insert(id, reply);
        }
    }
}
