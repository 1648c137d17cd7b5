//! HTTP/2 (h2c prior knowledge) upstream, on the `h2` crate's client: multiplexed
//! connections per endpoint and worker, opened on first use and as the upstream's
//! stream limit asks.
//!
//! A worker's requests use the connections it opened, whose tasks run on that
//! worker's runtime: their socket I/O and the requests' wake-ups stay on one thread.
//! Each request holds one of a connection's streams ([`H2Stream`]) until its answer
//! ends; a connection takes at most as many as the upstream's
//! `SETTINGS_MAX_CONCURRENT_STREAMS` allows now (read from `h2`, once the first
//! frame arrived: [`super::h2_frames`]), and a request
//! finding every connection of its worker full opens another, as Envoy's pool does.
//! A request above the limit (at the connection caps) waits inside the connection for
//! a stream; its stream is opened at once all the same, so a GOAWAY says whether it
//! was sent. Each connection's stream counts its bytes in the endpoint's stats
//! (`rx_bytes`, `tx_bytes`) and holds one of the endpoint's open-connection slots
//! until it closes; its task ([`super::h2_conn`]) checks with PINGs that the
//! upstream still answers.
//!
//! An upstream that says it is going away (GOAWAY) finishes the streams it took and
//! refuses new ones: the connection is retired ([`H2Sender::retire`]) at the first
//! request it turns away, so the next goes to another connection rather than waiting
//! for it to close.
//!
//! Under the cluster's `circuit_breakers.max_connections` ([`Cap`]), a worker that
//! finds the cap reached sends on any connection to the endpoint with a stream free,
//! else on the least busy one (the request waits in it for a stream); with no
//! connection at all, it waits, as a pending request, for a slot to free or for a
//! connection to come up.

use std::{
    num::NonZeroU32,
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use h2::client::SendRequest;

use super::{
    h2_frames::{FrameWatch, UpstreamFrames},
    limit::{ConnectionLimit, ConnectionSlot},
    Connector,
};
use crate::{cluster::BreakerLimit, ProxyError};

/// The settings a connection opens with (those `hyper`'s client had): windows that
/// let a 2 MiB answer come without a WINDOW_UPDATE, frames of the spec's default
/// size, answer heads up to 16 KiB, 1 MiB of request body buffered per stream, and
/// 100 streams assumed allowed until the upstream's SETTINGS say.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONN_WINDOW: u32 = 5 * 1024 * 1024;
const MAX_FRAME_SIZE: u32 = 16 * 1024;
const MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;
const MAX_SEND_BUFFER: usize = 1024 * 1024;
const INITIAL_MAX_SEND_STREAMS: usize = 100;

/// How long a bound on the streams per connection learned from the upstream's
/// GOAWAYs holds.
const LEARNED_BOUND_HOLDS: Duration = Duration::from_secs(30);

/// The HTTP/2 connections of one endpoint, by worker.
#[derive(Debug)]
pub(crate) struct H2Client {
    workers: Box<[Arc<H2Conns>]>,
    /// How long a new connection waits for the upstream's first frame (the connect
    /// timeout).
    first_frame_wait: Duration,
    /// The endpoint's open connections at most (`pool.max_connections`): past them,
    /// requests wait for a stream in the least busy connection.
    max_connections: u32,
    /// A connection without a stream for this long is closed (`pool.idle_timeout`).
    idle_timeout: Duration,
    /// Streams a connection takes in all (`pool.max_requests_per_connection`).
    max_requests: Option<NonZeroU32>,
    /// The streams a connection of the upstream's processed before it went away,
    /// learned from its GOAWAYs, and when (see [`H2Client::learn_streams_per_connection`]).
    learned: Mutex<Option<(NonZeroU32, Instant)>>,
    /// Woken when a connection comes up, for the requests waiting at the cap.
    connected: tokio::sync::Notify,
}

/// The cluster-wide connection cap a new connection is taken under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cap<'a> {
    pub(crate) limit: &'a ConnectionLimit,
    /// How long a request waits at the cap (the connect timeout).
    pub(crate) wait: Duration,
    /// The cluster's name, for the overflow errors.
    pub(crate) cluster: &'a Arc<str>,
}

impl Cap<'_> {
    fn overflow(&self, limit: BreakerLimit) -> ProxyError {
        ProxyError::ClusterOverflow {
            cluster: self.cluster.clone(),
            limit: limit.name(),
        }
    }

    fn reached(&self) -> bool {
        self.limit.open() >= u64::from(self.limit.max_connections())
    }
}

/// A way to send once the cap was reached.
enum AtCap {
    Shared(H2Stream),
    Slot(ConnectionSlot),
}

/// One worker's HTTP/2 connections to the endpoint, oldest first.
#[derive(Debug, Default)]
struct H2Conns {
    conns: Mutex<Vec<Arc<H2Sender>>>,
    connecting: tokio::sync::Mutex<()>,
}

/// An open HTTP/2 connection: its request sender, its streams, whether it was retired.
#[derive(Debug)]
pub(crate) struct H2Sender {
    send: SendRequest<Bytes>,
    /// The connection ended (set by its task).
    closed: Arc<AtomicBool>,
    retired: AtomicBool,
    /// An answer came on the connection.
    answered: AtomicBool,
    /// Streams held by requests now.
    streams: AtomicU32,
    /// Streams the connection may still take in all (`u32::MAX`: no bound).
    streams_left: AtomicU32,
    /// A stream was taken since the idle check last looked.
    used: AtomicBool,
    /// What the upstream's frames told (the last stream its GOAWAY names).
    frames: Arc<UpstreamFrames>,
}

/// One of a connection's streams, held by a request until its answer ends (or it
/// failed): the connection takes no more streams than the upstream allows.
#[derive(Debug)]
pub(crate) struct H2Stream {
    conn: Arc<H2Sender>,
}

impl H2Stream {
    /// The connection the stream is on.
    pub(crate) fn conn(&self) -> &Arc<H2Sender> {
        &self.conn
    }
}

impl Drop for H2Stream {
    fn drop(&mut self) {
        self.conn.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

impl H2Sender {
    /// A sender of requests on the connection.
    pub(crate) fn sender(&self) -> SendRequest<Bytes> {
        self.send.clone()
    }

    /// Takes the connection out of use for new requests: the upstream is going away.
    /// The streams it took go on to their end.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
    }

    /// Notes that an answer came on the connection.
    pub(crate) fn answered(&self) {
        if !self.answered.load(Ordering::Relaxed) {
            self.answered.store(true, Ordering::Relaxed);
        }
    }

    /// Whether an answer came on the connection.
    pub(crate) fn has_answered(&self) -> bool {
        self.answered.load(Ordering::Relaxed)
    }

    /// Whether the upstream said with a GOAWAY that it did not process the stream
    /// `id` (it named a lower last stream): the request may go again.
    pub(crate) fn turned_away(&self, id: u32) -> bool {
        self.frames.turned_away(id)
    }

    /// Whether the connection ended.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    fn usable(&self) -> bool {
        !self.retired.load(Ordering::Relaxed) && !self.is_closed()
    }

    /// A stream, if the connection has one free under the upstream's limit (an
    /// upstream allowing none gets one at a time: `h2` holds it until the
    /// upstream allows it).
    fn free_stream(self: &Arc<Self>) -> Option<H2Stream> {
        let max = u32::try_from(self.send.current_max_send_streams())
            .unwrap_or(u32::MAX)
            .max(1);
        self.streams
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        self.take_one();
        Some(H2Stream { conn: self.clone() })
    }

    /// Counts a stream taken: marks the connection used, and retires it with the
    /// last stream it may take.
    fn take_one(&self) {
        if !self.used.load(Ordering::Relaxed) {
            self.used.store(true, Ordering::Relaxed);
        }
        let left = self.streams_left.load(Ordering::Relaxed);
        if left != u32::MAX {
            if left <= 1 {
                self.retire();
            }
            self.streams_left
                .store(left.saturating_sub(1), Ordering::Relaxed);
        }
    }

    /// A stream over the upstream's limit: the request waits in the connection.
    fn extra_stream(self: &Arc<Self>) -> H2Stream {
        self.streams.fetch_add(1, Ordering::Relaxed);
        self.take_one();
        H2Stream { conn: self.clone() }
    }

    fn streams(&self) -> u32 {
        self.streams.load(Ordering::Relaxed)
    }
}

impl H2Client {
    /// A client for `workers` workers (at least one), opening at most
    /// `max_connections`, each waiting at most `first_frame_wait` for the upstream's
    /// first frame, taking at most `max_requests` streams in all, and closed once
    /// idle for `idle_timeout`.
    pub(crate) fn new(
        workers: usize,
        max_connections: u32,
        first_frame_wait: Duration,
        idle_timeout: Duration,
        max_requests: Option<NonZeroU32>,
    ) -> Self {
        Self {
            workers: (0..workers.max(1)).map(|_| Arc::default()).collect(),
            first_frame_wait,
            max_connections,
            idle_timeout,
            max_requests,
            learned: Mutex::new(None),
            connected: tokio::sync::Notify::new(),
        }
    }

    /// A stream on one of the calling worker's connections, connecting when they are
    /// all full or there are none (under `cap`, when the cluster has one).
    pub(crate) async fn stream(
        &self,
        connector: &Connector,
        open: &Arc<super::pool::OpenCount>,
        cap: Option<Cap<'_>>,
    ) -> Result<H2Stream, ProxyError> {
        let mine = &self.workers[crate::worker::slot(self.workers.len())];
        if let Some(s) = mine.free_stream() {
            return Ok(s);
        }
        // At the cap, another connection serves at once, rather than after this
        // worker's requests queued behind one waiting for a slot.
        if cap.is_some_and(|c| c.reached()) {
            if let Some(s) = self.shared_stream() {
                return Ok(s);
            }
        }
        let _one_at_a_time = mine.connecting.lock().await;
        if let Some(s) = mine.free_stream() {
            return Ok(s);
        }
        let slot = match cap {
            None => None,
            Some(cap) => match cap.limit.try_slot() {
                Some(slot) => Some(slot),
                None => match self.wait_at_cap(cap).await? {
                    AtCap::Shared(s) => return Ok(s),
                    AtCap::Slot(slot) => Some(slot),
                },
            },
        };
        let opened = mine
            .connect(
                connector,
                open,
                slot,
                self.max_connections,
                self.first_frame_wait,
                self.streams_per_connection(),
            )
            .await;
        let conn = match opened {
            Ok(conn) => {
                tokio::spawn(close_when_idle(
                    Arc::downgrade(mine),
                    Arc::downgrade(&conn),
                    self.idle_timeout,
                ));
                conn
            }
            // The endpoint's connections all open: the least busy takes the request.
            Err(e @ ProxyError::Overflow { .. }) => return self.shared_stream().ok_or(e),
            Err(e) => return Err(e),
        };
        self.connected.notify_waiters();
        Ok(conn.free_stream().unwrap_or_else(|| conn.extra_stream()))
    }

    /// Notes that a connection went away (GOAWAY without error) having processed at
    /// most `processed` streams, the one after them turned away: an upstream that
    /// closes each connection after so many requests (nginx's `keepalive_requests`)
    /// gets no more on the next ones, so that the requests above its bound are not
    /// sent only to be turned away and sent again. The figure holds for
    /// [`LEARNED_BOUND_HOLDS`] (an upstream reloading goes away after any number, and
    /// one whose bound grew is not seen going away at the old one), then is learned
    /// again; `pool.max_requests_per_connection` sets a bound of its own.
    pub(crate) fn learn_streams_per_connection(&self, processed: u32) {
        let Some(processed) = NonZeroU32::new(processed) else {
            return;
        };
        let mut learned = self
            .learned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        *learned = match *learned {
            Some((known, at)) if now.duration_since(at) < LEARNED_BOUND_HOLDS => {
                Some((known.min(processed), at))
            }
            _ => Some((processed, now)),
        };
    }

    /// The streams a new connection may take in all: the configured bound, or the one
    /// learned, whichever is lower.
    fn streams_per_connection(&self) -> Option<NonZeroU32> {
        let learned = self
            .learned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .filter(|(_, at)| at.elapsed() < LEARNED_BOUND_HOLDS)
            .map(|(n, _)| n);
        match (self.max_requests, learned) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A stream on any worker's connection with one free, else on the least busy
    /// connection, over its limit.
    fn shared_stream(&self) -> Option<H2Stream> {
        if let Some(s) = self.workers.iter().find_map(|w| w.free_stream()) {
            return Some(s);
        }
        let least_busy = self
            .workers
            .iter()
            .filter_map(|w| w.least_busy())
            .min_by_key(|c| c.streams())?;
        Some(least_busy.extra_stream())
    }

    /// At the cap: a stream on a live connection, else a wait (as a pending request,
    /// within `cap.wait`) for a slot or for a connection to come up.
    async fn wait_at_cap(&self, cap: Cap<'_>) -> Result<AtCap, ProxyError> {
        let _pending = cap
            .limit
            .start_waiting()
            .map_err(|_| cap.overflow(BreakerLimit::MaxPendingRequests))?;
        let wait = async {
            loop {
                let connected = self.connected.notified();
                tokio::pin!(connected);
                // Enabled before looking, so a connection coming up in between is seen.
                connected.as_mut().enable();
                if let Some(s) = self.shared_stream() {
                    return Some(AtCap::Shared(s));
                }
                tokio::select! {
                    () = &mut connected => {}
                    slot = cap.limit.freed_slot() => return slot.map(AtCap::Slot),
                }
            }
        };
        match tokio::time::timeout(cap.wait, wait).await {
            Ok(Some(at_cap)) => Ok(at_cap),
            Ok(None) | Err(_) => Err(cap.overflow(BreakerLimit::MaxConnections)),
        }
    }

    /// Live connections now.
    #[cfg(test)]
    pub(crate) fn live_connections(&self) -> usize {
        self.workers.iter().map(|w| w.live().len()).sum()
    }
}

impl H2Conns {
    /// Opens a connection for the worker (its `connecting` lock held), holding `slot`,
    /// if the endpoint has fewer than `max_connections` open.
    async fn connect(
        &self,
        connector: &Connector,
        open: &Arc<super::pool::OpenCount>,
        slot: Option<ConnectionSlot>,
        max_connections: u32,
        first_frame_wait: Duration,
        max_requests: Option<NonZeroU32>,
    ) -> Result<Arc<H2Sender>, ProxyError> {
        let addr = connector.address();
        let guard = open
            .try_open(max_connections, slot)
            .ok_or(ProxyError::Overflow { addr })?;
        // Every byte of the connection (preface, settings, headers, bodies) counts in
        // the endpoint's stats; the guard goes with the stream when the connection ends.
        let counted = crate::net::Counted {
            inner: connector.connect().await?,
            stats: guard,
        };
        let frames = UpstreamFrames::new();
        let stream = FrameWatch::new(counted, frames.clone());
        let (send, conn) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONN_WINDOW)
            .max_frame_size(MAX_FRAME_SIZE)
            .max_header_list_size(MAX_HEADER_LIST_SIZE)
            .max_send_buffer_size(MAX_SEND_BUFFER)
            .initial_max_send_streams(INITIAL_MAX_SEND_STREAMS)
            .enable_push(false)
            .handshake::<_, Bytes>(stream)
            .await
            .map_err(|e| ProxyError::Upstream {
                request_sent: false,
                source: e.into(),
            })?;
        let closed = Arc::new(AtomicBool::new(false));
        // On the calling worker's runtime: the connection serves that worker only.
        tokio::spawn(super::h2_conn::drive(conn, closed.clone(), addr));
        // The upstream's first frame names its stream limit: the requests waiting for
        // this connection are spread by it. An upstream slow to send it is used under
        // the limit assumed until then.
        let _ = tokio::time::timeout(first_frame_wait, frames.first_read()).await;
        let sender = Arc::new(H2Sender {
            send,
            closed,
            retired: AtomicBool::new(false),
            answered: AtomicBool::new(false),
            streams: AtomicU32::new(0),
            streams_left: AtomicU32::new(max_requests.map_or(u32::MAX, NonZeroU32::get)),
            used: AtomicBool::new(false),
            frames,
        });
        self.live().push(sender.clone());
        Ok(sender)
    }

    /// The worker's usable connections, those that closed or were retired let go.
    fn live(&self) -> MutexGuard<'_, Vec<Arc<H2Sender>>> {
        let mut conns = self
            .conns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        conns.retain(|c| c.usable());
        conns
    }

    /// A stream on the oldest of the worker's connections with one free.
    fn free_stream(&self) -> Option<H2Stream> {
        self.live().iter().find_map(H2Sender::free_stream)
    }

    fn least_busy(&self) -> Option<Arc<H2Sender>> {
        self.live().iter().min_by_key(|c| c.streams()).cloned()
    }
}

/// Takes the connection out of the worker's once a whole `idle_timeout` passed with
/// no stream taken and none open (a surplus opened for a burst, or a connection no
/// longer used), so that it closes; ends when the connection is gone.
async fn close_when_idle(
    worker: std::sync::Weak<H2Conns>,
    conn: std::sync::Weak<H2Sender>,
    idle_timeout: Duration,
) {
    let mut ticks = tokio::time::interval(idle_timeout.max(Duration::from_millis(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once.
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(conn) = conn.upgrade() else {
            return;
        };
        if !conn.usable() {
            return;
        }
        let used = conn.used.swap(false, Ordering::Relaxed);
        if !used && conn.streams() == 0 {
            conn.retire();
            if let Some(worker) = worker.upgrade() {
                // Let go here rather than at the worker's next request.
                drop(worker.live());
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(max_requests: Option<u32>) -> H2Client {
        let second = Duration::from_secs(1);
        H2Client::new(
            1,
            10,
            second,
            second,
            max_requests.and_then(NonZeroU32::new),
        )
    }

    #[test]
    fn a_bound_learned_from_goaways_caps_new_connections() {
        let c = client(None);
        assert_eq!(c.streams_per_connection(), None);
        // A connection gone before processing anything teaches nothing.
        c.learn_streams_per_connection(0);
        assert_eq!(c.streams_per_connection(), None);
        // The streams above the GOAWAY's last one are turned away in any order: the
        // lowest says how many it processed.
        for processed in [12, 10, 30] {
            c.learn_streams_per_connection(processed);
        }
        assert_eq!(c.streams_per_connection(), NonZeroU32::new(10));
    }

    #[test]
    fn the_lower_of_the_configured_and_the_learned_bound_holds() {
        let c = client(Some(50));
        assert_eq!(c.streams_per_connection(), NonZeroU32::new(50));
        c.learn_streams_per_connection(100);
        assert_eq!(c.streams_per_connection(), NonZeroU32::new(50));
        c.learn_streams_per_connection(20);
        assert_eq!(c.streams_per_connection(), NonZeroU32::new(20));
    }
}
