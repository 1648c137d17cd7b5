//! The downstream side: one connection, many requests in flight.
//!
//! One task per connection reads frames, sends each request through the listener's
//! request stack (its future polled in place, no task per request), and writes each
//! response as soon as it completes, in completion order. Heartbeats are answered
//! without leaving the loop; reading pauses while `max_in_flight` requests are
//! pending. A frame over `max_frame_bytes` whose fixed header names its request is
//! answered with the protocol's error (reason `body_too_large`) and its body skipped
//! unbuffered, the connection's other calls untouched; an answer over it fails its
//! call (`response_too_large`). Both are counted and logged at `info`, rate-limited.
//! A malformed frame (or an oversized one the protocol cannot place) gets the
//! protocol's error reply where it names a request, then the connection stops
//! reading, finishes what is in flight and closes.
//!
//! Draining delivers every answer owed. When the drain signal fires, the connection
//! sends the protocol's go-away where it has one ([`Protocol::goaway`]: Dubbo's
//! read-only event) and keeps reading, so that no request is left unread in the
//! socket: each call that arrives from then on is answered at once with the
//! protocol's "server closing" error (reason `server_closing`: Bolt
//! `SERVER_THREADPOOL_BUSY`, Dubbo `SERVER_THREADPOOL_EXHAUSTED_ERROR`) instead of
//! being forwarded, and counted as `drain_refused`. Once every call in flight is
//! answered and written, the connection shuts its write half (FIN) and reads and
//! drops what the peer still sends until the peer closes, for at most [`LINGER`],
//! before closing. Closing a socket with unread input makes the kernel send a reset,
//! and a reset makes the peer's kernel discard the answers it has not read yet. The
//! server's drain timeout bounds the whole.
//!
//! A hot upgrade hands the connection over instead ([`Signal::HandOff`], at the
//! connection's moment within the upgrade's window): it stops reading there, sends
//! no go-away, answers every call in flight and writes the answers, then returns
//! the bytes it read and did not parse (a partial frame, or whole frames it had not
//! started), leaving the stream open for the caller to hand over. The new process
//! reads on from those bytes: a frame split across the hand-off is completed there.

mod reply;

use std::{future::Future, pin::Pin, sync::atomic::Ordering::Relaxed, time::Duration};

use bytes::{Bytes, BytesMut};
use futures_util::{
    stream::{FuturesUnordered, StreamExt},
    FutureExt,
};
use http::StatusCode;
use proxy_core::{BoxHttp, HttpRequest};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    time::Instant,
};

use self::reply::{answer, call, encode, malformed, Done};
use super::{log, next_frame, skip, OwnedFailure, WRITE_HIGH_WATER};
use crate::{
    config::ServerOptions,
    metrics::{Counters, TooLarge},
    protocol::{DecodeError, FrameKind, Protocol},
};

/// A call being served: its answer, or nothing to answer for a one-way call.
struct InFlight<M> {
    one_way: bool,
    fut: Pin<Box<dyn Future<Output = Done<M>> + Send>>,
}

impl<M> Future for InFlight<M> {
    type Output = Done<M>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Done<M>> {
        self.fut.as_mut().poll(cx)
    }
}

/// How long a closing connection, its write half shut, keeps reading and dropping
/// what the peer still sends while waiting for the peer to close.
const LINGER: Duration = Duration::from_secs(1);

/// How much a closing connection reads and drops at most while it lingers.
const LINGER_BYTES: usize = 1 << 20;

/// What ends a connection's usual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// Drain: refuse new calls, answer those in flight, close.
    Drain,
    /// Hand the connection over: stop reading, answer those in flight, give the
    /// unread bytes back. With more than `max_unread` unread, drain instead.
    HandOff {
        /// The most unread bytes the connection may carry over.
        max_unread: usize,
    },
}

/// What the connection loop needs besides the stream.
pub(crate) struct ServeParams<'a, P: Protocol> {
    /// The protocol.
    pub(crate) protocol: &'a P,
    /// The listener's options for it.
    pub(crate) options: &'a ServerOptions,
    /// Its counters.
    pub(crate) counters: &'a Counters,
    /// Copied into every request's extensions (connection facts: peer, TLS).
    pub(crate) extensions: http::Extensions,
    /// Closes a connection with nothing in flight and no bytes for this long (the
    /// options' value, else the listener's default).
    pub(crate) idle_timeout: Option<Duration>,
    /// Closes a connection whose started frame is not complete after this long
    /// (slow-peer defence).
    pub(crate) frame_timeout: Option<Duration>,
    /// The connection is served on after a hand-off that did not happen: it is
    /// counted already.
    pub(crate) resumed: bool,
}

/// Serves one downstream connection until the peer closes it, a malformed frame ends
/// it, or `drain` resolves: with [`Signal::Drain`], in-flight requests finish, later
/// calls are refused with the protocol's "server closing" error, and it closes
/// without a reset; with [`Signal::HandOff`], it stops reading, in-flight requests
/// finish, their answers are written, and it returns the bytes read and not parsed
/// (`Some`), the stream left open. `None`: the connection ended (closed).
///
/// `prefix` holds bytes already read from the connection (by sniffing).
pub(crate) async fn serve_connection<P, R, W, D>(
    params: ServeParams<'_, P>,
    mut rd: R,
    mut wr: W,
    prefix: Bytes,
    mut service: BoxHttp,
    drain: D,
) -> Option<BytesMut>
where
    P: Protocol,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    D: Future<Output = Signal>,
{
    let ServeParams {
        protocol: proto,
        options,
        counters,
        extensions,
        idle_timeout,
        frame_timeout,
        resumed,
    } = params;
    if !resumed {
        Counters::inc(&counters.downstream_connections);
    }
    let max_frame = options.max_frame_bytes.as_usize();
    let max_in_flight = options.max_in_flight.get() as usize;
    let mut rbuf = BytesMut::with_capacity(8192.max(prefix.len()));
    rbuf.extend_from_slice(&prefix);
    let mut wbuf = BytesMut::with_capacity(8192);
    let mut inflight: FuturesUnordered<InFlight<P::Meta>> = FuturesUnordered::new();
    let mut reading = true;
    let mut draining = false;
    let mut drain = std::pin::pin!(drain);
    let far = Duration::from_secs(86_400 * 365);
    let mut timer = std::pin::pin!(tokio::time::sleep(far));
    let mut last_activity = Instant::now();
    let mut frame_started: Option<Instant> = None;
    let mut write_stalled_since: Option<Instant> = None;
    // Bytes still to drop of an oversized frame being skipped.
    let mut skipping: u64 = 0;
    let mut peer_closed = false;
    // Calls refused because the connection is draining.
    let mut refused: u64 = 0;
    // Stopped reading to be handed over once every answer is written.
    let mut handing_off = false;
    // Ended by a failed write or a timeout, not at a boundary.
    let mut cut = false;

    loop {
        // Cut and dispatch every complete frame in the buffer (while draining, calls
        // are refused at once, so the in-flight limit does not hold them back).
        while reading
            && (draining || inflight.len() < max_in_flight)
            && wbuf.len() < WRITE_HIGH_WATER
        {
            if skipping > 0 {
                skip(&mut rbuf, &mut skipping);
                if skipping > 0 {
                    break;
                }
                frame_started = None;
            }
            let frame = match next_frame(proto, &mut rbuf, max_frame) {
                Ok(Some(f)) => {
                    frame_started = None;
                    f
                }
                Ok(None) => break,
                Err(DecodeError::TooLarge { len, max }) if proto.frame_head(&rbuf).is_some() => {
                    // The header names the request: answer it alone, skip its body as
                    // it arrives, and carry on with the connection's other calls.
                    Counters::inc(&counters.oversized_frames);
                    if let Some(head) = proto.frame_head(&rbuf) {
                        if matches!(head.kind, FrameKind::Request | FrameKind::OneWay) {
                            counters.count_too_large(TooLarge::Request);
                            log::too_large(proto.name(), TooLarge::Request, len, max);
                        }
                        if head.kind == FrameKind::Request {
                            let f = OwnedFailure::new(
                                TooLarge::Request.reason(),
                                StatusCode::PAYLOAD_TOO_LARGE,
                                format!("request of {len} bytes exceeds max_frame_bytes ({max})"),
                            );
                            Counters::inc(&counters.error_replies);
                            encode(
                                proto,
                                &proto.error_reply(&head.meta, &f.as_failure()),
                                &mut wbuf,
                            );
                        }
                    }
                    skipping = len;
                    continue;
                }
                Err(e) => {
                    malformed(proto, &rbuf, &e, counters, &mut wbuf);
                    reading = false;
                    break;
                }
            };
            let head: Bytes = frame.slice(..frame.len().min(64));
            let frame = match proto.decode(frame) {
                Ok(f) => f,
                Err(e) => {
                    malformed(proto, &head, &e, counters, &mut wbuf);
                    reading = false;
                    break;
                }
            };
            match proto.kind(&frame) {
                FrameKind::Heartbeat => {
                    Counters::inc(&counters.heartbeats);
                    let _ = encode(proto, &proto.heartbeat_reply(&frame), &mut wbuf);
                }
                FrameKind::HeartbeatReply => {}
                FrameKind::Response => Counters::inc(&counters.unexpected_frames),
                kind @ (FrameKind::Request | FrameKind::OneWay) if draining => {
                    Counters::inc(&counters.downstream_requests);
                    Counters::inc(&counters.drain_refused);
                    refused += 1;
                    log::refused(proto.name(), refused);
                    if kind == FrameKind::Request {
                        let f = OwnedFailure::new(
                            "server_closing",
                            StatusCode::SERVICE_UNAVAILABLE,
                            "server closing: call not started, retry on another connection",
                        );
                        Counters::inc(&counters.error_replies);
                        let meta = proto.request_meta(&frame);
                        encode(proto, &proto.error_reply(&meta, &f.as_failure()), &mut wbuf);
                    }
                }
                kind @ (FrameKind::Request | FrameKind::OneWay) => {
                    Counters::inc(&counters.downstream_requests);
                    let meta = proto.request_meta(&frame);
                    let one_way = kind == FrameKind::OneWay;
                    match proto.request_to_http(frame) {
                        Ok(mut req) => {
                            add_extensions(&mut req, &extensions);
                            let fut = call(&mut service, req, max_frame);
                            counters.downstream_in_flight.fetch_add(1, Relaxed);
                            // A combinator, not an `async` block: the call's future is
                            // held once, so the box stays small enough for the
                            // allocator's per-thread cache.
                            let done = move |result| Done {
                                meta,
                                one_way,
                                result,
                            };
                            inflight.push(InFlight {
                                one_way,
                                fut: Box::pin(fut.map(done)),
                            });
                        }
                        Err(e) => {
                            tracing::debug!(protocol = proto.name(), error = %e, "undecodable request payload");
                            if !one_way {
                                let f = OwnedFailure::new(
                                    "bad_request",
                                    StatusCode::BAD_REQUEST,
                                    e.to_string(),
                                );
                                Counters::inc(&counters.error_replies);
                                encode(
                                    proto,
                                    &proto.error_reply(&meta, &f.as_failure()),
                                    &mut wbuf,
                                );
                            }
                        }
                    }
                }
            }
        }
        if (!reading || draining) && inflight.is_empty() && wbuf.is_empty() {
            break;
        }
        // Backpressure: a peer that does not read its answers gets no more requests read.
        let can_read = reading
            && (draining || inflight.len() < max_in_flight)
            && wbuf.len() < WRITE_HIGH_WATER;
        if can_read && rbuf.capacity() - rbuf.len() < 4096 {
            rbuf.reserve(8192);
        }
        // One timer: a started frame must complete in time; an idle connection closes.
        frame_started = if rbuf.is_empty() && skipping == 0 {
            None
        } else {
            frame_started.or(Some(Instant::now()))
        };
        write_stalled_since = if wbuf.is_empty() {
            None
        } else {
            write_stalled_since.or(Some(Instant::now()))
        };
        let deadline = match (frame_started, write_stalled_since, frame_timeout) {
            // A peer that stops reading our answers is cut off like a slow sender.
            (_, Some(at), Some(t)) => Some(at + t),
            (Some(at), _, Some(t)) if reading => Some(at + t),
            _ if inflight.is_empty() && wbuf.is_empty() && reading => {
                idle_timeout.map(|t| last_activity + t)
            }
            _ => None,
        };
        if let Some(at) = deadline {
            if timer.deadline() != at {
                timer.as_mut().reset(at);
            }
        }
        tokio::select! {
            biased;
            Some(done) = inflight.next(), if !inflight.is_empty() => {
                counters.downstream_in_flight.fetch_sub(1, Relaxed);
                if !done.one_way {
                    answer(proto, done, counters, max_frame, &mut wbuf);
                }
            }
            res = wr.write_buf(&mut wbuf), if !wbuf.is_empty() => {
                if res.is_err() || matches!(res, Ok(0)) {
                    cut = true;
                    break;
                }
                write_stalled_since = None;
                last_activity = Instant::now();
            }
            res = rd.read_buf(&mut rbuf), if can_read => {
                match res {
                    Ok(0) | Err(_) => {
                        reading = false;
                        peer_closed = true;
                        // The caller is gone (RPC clients close, they do not half-close
                        // and wait): its calls are cancelled, so they stop counting as
                        // active upstream and free their slots now, not when each
                        // would have timed out. One-way calls still go out.
                        let before = inflight.len();
                        inflight = inflight.into_iter().filter(|c| c.one_way).collect();
                        let cancelled = before - inflight.len();
                        counters
                            .downstream_in_flight
                            .fetch_sub(cancelled as i64, Relaxed);
                    }
                    Ok(_) => last_activity = Instant::now(),
                }
            }
            signal = &mut drain, if !draining && !handing_off => match signal {
                // Nothing more is read here: what was read and not parsed travels
                // (a frame being skipped cannot: its rest would look like a frame).
                Signal::HandOff { max_unread } if reading && skipping == 0 && rbuf.len() <= max_unread => {
                    handing_off = true;
                    reading = false;
                    tracing::debug!(protocol = proto.name(), in_flight = inflight.len(), unread = rbuf.len(), "handing the connection over");
                }
                Signal::HandOff { .. } | Signal::Drain => {
                    // Keep reading: calls that arrive now are refused, not left unread.
                    draining = true;
                    tracing::debug!(protocol = proto.name(), in_flight = inflight.len(), "draining connection");
                    if let Some(goaway) = proto.goaway() {
                        encode(proto, &goaway, &mut wbuf);
                    }
                }
            },
            () = &mut timer, if deadline.is_some() => {
                tracing::debug!(protocol = proto.name(), partial = frame_started.is_some(), "connection timed out");
                cut = true;
                break;
            }
        }
    }
    if handing_off && !cut && inflight.is_empty() && wbuf.is_empty() {
        // Every answer owed is written: the socket may go.
        return match wr.flush().await {
            Ok(()) => Some(rbuf),
            Err(_) => None,
        };
    }
    let n = inflight.len() as i64;
    counters.downstream_in_flight.fetch_sub(n, Relaxed);
    drop(inflight);
    close(&mut rd, &mut wr, rbuf, peer_closed).await;
    None
}

/// Ends a connection without a reset: flushes, shuts the write half (FIN) and, unless
/// the peer has closed its side already, reads and drops what it still sends until
/// it closes too, for at most [`LINGER`] and [`LINGER_BYTES`]. A socket closed with
/// unread input makes the kernel send a reset, and the reset makes the peer's kernel
/// discard the answers it has not read yet.
async fn close<R, W>(rd: &mut R, wr: &mut W, mut buf: BytesMut, peer_closed: bool)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let deadline = Instant::now() + LINGER;
    let shut = async {
        wr.flush().await?;
        wr.shutdown().await
    };
    // A peer that reads nothing must not hold a TLS flush forever.
    let shut = tokio::time::timeout_at(deadline, shut).await;
    if peer_closed || !matches!(shut, Ok(Ok(()))) {
        return;
    }
    let mut dropped = 0;
    while dropped < LINGER_BYTES {
        buf.clear();
        if buf.capacity() < 4096 {
            buf.reserve(8192);
        }
        match tokio::time::timeout_at(deadline, rd.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => dropped += n,
            _ => return,
        }
    }
}

fn add_extensions(req: &mut HttpRequest, conn: &http::Extensions) {
    if !conn.is_empty() {
        req.extensions_mut().extend(conn.clone());
    }
}

#[cfg(test)]
mod tests;
