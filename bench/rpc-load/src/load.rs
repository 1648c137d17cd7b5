//! `rpc-load run`: N connections, each keeping M calls in flight (pipelined on the
//! connection, matched by request id), for a duration or a number of calls, after a
//! warm-up that is not counted.

use std::{
    collections::HashMap,
    io,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use bytes::BytesMut;
use proxy_codec::FrameKind;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};

use crate::wire::Wire;

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The server (or the sidecar's listener).
    pub(crate) addr: SocketAddr,
    /// Connections opened.
    pub(crate) connections: usize,
    /// Calls in flight on each connection.
    pub(crate) concurrency: usize,
    /// Not counted: connections warm, caches hot.
    pub(crate) warmup: Duration,
    /// The measured window (when no call count is given, or as a cap).
    pub(crate) duration: Option<Duration>,
    /// Calls made in the measured window (all connections together).
    pub(crate) calls: Option<u64>,
    /// Payload bytes per request.
    pub(crate) payload_bytes: usize,
    /// A call unanswered this long, once sending stopped, counts as an error.
    pub(crate) timeout: Duration,
}

/// What one connection (or all of them, merged) measured.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Calls answered in the measured window.
    pub(crate) calls: u64,
    /// Calls failed: an error status, an unknown id, no answer, a broken connection.
    pub(crate) errors: u64,
    /// The latency of each call answered (nanoseconds), capped in number.
    pub(crate) latencies: Vec<u64>,
    /// When the last counted answer came.
    pub(crate) last: Option<Instant>,
}

/// Latencies kept per connection (past it, calls count but their latency is not
/// kept).
const MAX_SAMPLES: usize = 4_000_000;

/// When calls may be sent.
struct Window {
    from: Instant,
    until: Option<Instant>,
    budget: Option<AtomicU64>,
}

impl Window {
    fn may_send(&self, now: Instant) -> bool {
        if now < self.from {
            return true;
        }
        if self.until.is_some_and(|end| now >= end) {
            return false;
        }
        match &self.budget {
            Some(left) => left
                .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
                .is_ok(),
            None => true,
        }
    }
}

/// Runs `plan`; returns the merged tally and the start of the measured window.
pub(crate) async fn run<W: Wire>(wire: W, plan: &Plan) -> io::Result<(Tally, Instant)> {
    let mut streams = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        let s = TcpStream::connect(plan.addr).await?;
        s.set_nodelay(true)?;
        streams.push(s);
    }
    let from = Instant::now() + plan.warmup;
    let window = Arc::new(Window {
        from,
        until: plan.duration.map(|d| from + d),
        budget: plan.calls.map(AtomicU64::new),
    });
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|s| tokio::spawn(connection(wire, s, plan.clone(), window.clone())))
        .collect();
    let mut total = Tally::default();
    for t in tasks {
        let tally = t.await.map_err(io::Error::other)?;
        total.calls += tally.calls;
        total.errors += tally.errors;
        total.latencies.extend(tally.latencies);
        total.last = total.last.max(tally.last);
    }
    Ok((total, from))
}

/// One connection: fills its window of calls, then sends one for each answer.
async fn connection<W: Wire>(wire: W, stream: TcpStream, plan: Plan, window: Arc<Window>) -> Tally {
    let (mut rd, mut wr) = stream.into_split();
    let mut request = wire.request(plan.payload_bytes);
    let mut sent: HashMap<u64, Instant> = HashMap::with_capacity(plan.concurrency);
    let mut next_id: u64 = 0;
    let mut tally = Tally::default();
    let mut rbuf = BytesMut::with_capacity(64 << 10);
    let mut wbuf = BytesMut::with_capacity(64 << 10);
    let mut send = |wbuf: &mut BytesMut, sent: &mut HashMap<u64, Instant>, now: Instant| {
        if !window.may_send(now) {
            return;
        }
        next_id = (next_id + 1) & u64::from(u32::MAX);
        wire.set_request_id(&mut request, next_id);
        if wire.encode(&request, wbuf).is_ok() {
            sent.insert(next_id, now);
        }
    };
    let now = Instant::now();
    for _ in 0..plan.concurrency {
        send(&mut wbuf, &mut sent, now);
    }
    while !sent.is_empty() {
        if !wbuf.is_empty() {
            if wr.write_all(&wbuf).await.is_err() {
                break;
            }
            wbuf.clear();
        }
        if rbuf.capacity() - rbuf.len() < 16 << 10 {
            rbuf.reserve(64 << 10);
        }
        // Sending goes on while calls are answered; once it stops, stragglers get
        // `timeout` to answer.
        let read = tokio::time::timeout(plan.timeout, rd.read_buf(&mut rbuf)).await;
        if !matches!(read, Ok(Ok(n)) if n > 0) {
            break;
        }
        let now = Instant::now();
        while let Ok(Some(len)) = wire.frame_length(&rbuf) {
            let Ok(len) = usize::try_from(len) else { break };
            if rbuf.len() < len {
                break;
            }
            let Ok(frame) = wire.decode(rbuf.split_to(len).freeze()) else {
                tally.errors += 1;
                continue;
            };
            if wire.kind(&frame) != FrameKind::Response {
                continue;
            }
            match sent.remove(&wire.request_id(&frame)) {
                Some(t0) if t0 >= window.from => {
                    tally.calls += 1;
                    tally.last = Some(now);
                    if !wire.ok(&frame) {
                        tally.errors += 1;
                    }
                    if tally.latencies.len() < MAX_SAMPLES {
                        tally.latencies.push((now - t0).as_nanos() as u64);
                    }
                }
                // Warm-up.
                Some(_) => {}
                None => tally.errors += 1,
            }
            send(&mut wbuf, &mut sent, now);
        }
    }
    // Unanswered, or lost with the connection (in the warm-up too).
    tally.errors += sent.len() as u64;
    tally
}
