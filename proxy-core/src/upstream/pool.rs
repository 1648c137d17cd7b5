//! Upstream HTTP/1.1 connection pooling: the count of an endpoint's open connections
//! against its maximum (shared by all workers), and the idle connections of one
//! endpoint on one worker ([`H1Pool`]), a most-recently-used stack with idle expiry.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::Duration,
};

use super::h1::H1Conn;
use crate::metrics::ConnStats;

/// Counts one open upstream connection until dropped, and holds its slot of the
/// cluster's `circuit_breakers.max_connections` when the cluster has one.
#[derive(Debug)]
pub(crate) struct OpenGuard {
    count: Arc<OpenCount>,
    /// Held, not read: dropping it gives the slot back (and wakes a waiting request).
    _slot: Option<super::limit::ConnectionSlot>,
}

impl OpenGuard {
    /// Counts `n` bytes received from the endpoint.
    pub(crate) fn count_rx(&self, n: usize) {
        self.count.stats.count_rx(n);
    }

    /// Counts `n` bytes sent to the endpoint.
    pub(crate) fn count_tx(&self, n: usize) {
        self.count.stats.count_tx(n);
    }
}

impl crate::net::ByteCounter for OpenGuard {
    fn rx(&self, n: usize) {
        self.count.stats.count_rx(n);
    }
    fn tx(&self, n: usize) {
        self.count.stats.count_tx(n);
    }
}

/// The open connections of one endpoint (HTTP/1.1 and HTTP/2, of every worker)
/// against its `max_connections`, and the endpoint's connection stats.
#[derive(Debug, Default)]
pub(crate) struct OpenCount {
    open: AtomicU32,
    pub(crate) stats: ConnStats,
}

impl OpenCount {
    /// Reserves a connection slot if fewer than `max` are open; the guard also holds
    /// the connection's cluster-wide `slot`, if any (given back when it drops).
    pub(crate) fn try_open(
        self: &Arc<Self>,
        max: u32,
        slot: Option<super::limit::ConnectionSlot>,
    ) -> Option<OpenGuard> {
        let mut cur = self.open.load(Ordering::Relaxed);
        loop {
            if cur >= max {
                self.stats.reject();
                return None;
            }
            match self
                .open
                .compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.stats.open();
                    return Some(OpenGuard {
                        count: self.clone(),
                        _slot: slot,
                    });
                }
                Err(now) => cur = now,
            }
        }
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> u32 {
        self.open.load(Ordering::Relaxed)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.count.open.fetch_sub(1, Ordering::AcqRel);
        self.count.stats.close();
    }
}

/// How often the server sweeps idle pooled connections for expiry.
pub(crate) const IDLE_SWEEP: Duration = Duration::from_secs(5);

/// The idle connections of one endpoint on one worker: a stack, most recently
/// returned on top.
///
/// [`H1Pool::take`] pops the top, so the load reuses as few connections as it needs
/// and the others sink to the bottom, where the sweep closes them once they have been
/// idle for the idle timeout: under steady load a surplus left by a burst shrinks to
/// what the load needs.
///
/// Expiry is counted in sweeps ([`IDLE_SWEEP`]) rather than read from the clock, so
/// taking and returning a connection costs no clock read, only an uncontended lock
/// (each worker has its own pool). A connection goes idle in the current sweep epoch
/// and is closed by the first sweep that finds it idle for more than
/// `ceil(idle_timeout / IDLE_SWEEP)` whole epochs: never before the idle timeout, at
/// most two sweeps after it. The stack is ordered by the epoch its connections went
/// idle in (the bottom is the oldest), so a sweep stops at the first live one.
#[derive(Debug)]
pub(crate) struct H1Pool {
    idle: Mutex<Idle>,
    /// Sweeps so far; a connection remembers the sweep epoch it went idle in.
    epoch: AtomicU32,
    /// Whole sweeps a connection may stay idle.
    max_idle_sweeps: u32,
    /// Idle connections kept; a return past it closes the oldest.
    max_idle: usize,
    /// Woken when a connection goes idle while requests wait for one (the cluster's
    /// `max_connections` reached).
    idle_ready: tokio::sync::Notify,
    /// The cluster's connection cap, when it has one: a return no request of this
    /// worker waits for wakes the requests waiting on other pools, which close the
    /// idle connection to take its slot.
    limit: Option<Arc<super::limit::ConnectionLimit>>,
    /// Requests a connection carries at most (`pool.max_requests_per_connection`).
    pub(crate) max_requests: Option<std::num::NonZeroU32>,
}

#[derive(Debug, Default)]
struct Idle {
    /// Bottom (oldest) first, top (most recently returned) last.
    stack: VecDeque<Box<H1Conn>>,
    /// Set when the endpoint is gone: returned connections are closed, which also
    /// breaks the pool <-> connection reference cycle.
    closed: bool,
    /// Requests of this worker waiting for a connection: a return wakes one. Read
    /// under the lock a return takes anyway, so a pool without waiters pays nothing.
    waiters: u32,
}

/// A request registered as waiting for an idle connection of a pool.
#[derive(Debug)]
pub(crate) struct IdleWaiter<'a>(&'a H1Pool);

impl Drop for IdleWaiter<'_> {
    fn drop(&mut self) {
        let mut idle = self.0.lock();
        idle.waiters = idle.waiters.saturating_sub(1);
    }
}

impl H1Pool {
    /// A pool keeping at most `max_idle` connections (at least one), each for
    /// `idle_timeout`.
    pub(crate) fn new(max_idle: u32, idle_timeout: Duration) -> Self {
        let sweeps = idle_timeout
            .as_millis()
            .div_ceil(IDLE_SWEEP.as_millis())
            .max(1);
        Self {
            idle: Mutex::default(),
            epoch: AtomicU32::new(0),
            max_idle_sweeps: u32::try_from(sweeps).unwrap_or(u32::MAX),
            max_idle: usize::try_from(max_idle.max(1)).unwrap_or(usize::MAX),
            idle_ready: tokio::sync::Notify::new(),
            limit: None,
            max_requests: None,
        }
    }

    /// The pool, its connections closed after `max_requests` requests each.
    pub(crate) fn with_max_requests(mut self, max_requests: Option<std::num::NonZeroU32>) -> Self {
        self.max_requests = max_requests;
        self
    }

    /// A new, empty pool with the settings of this one, under the cluster's
    /// connection cap `limit`.
    pub(crate) fn capped(&self, limit: Arc<super::limit::ConnectionLimit>) -> Self {
        Self {
            idle: Mutex::default(),
            epoch: AtomicU32::new(0),
            max_idle_sweeps: self.max_idle_sweeps,
            max_idle: self.max_idle,
            idle_ready: tokio::sync::Notify::new(),
            limit: Some(limit),
            max_requests: self.max_requests,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Idle> {
        // Nothing panics while the lock is held; a poisoned stack is still consistent.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn expired(&self, epoch: u32, conn: &H1Conn) -> bool {
        epoch.wrapping_sub(conn.idle_epoch) > self.max_idle_sweeps
    }

    /// Takes the most recently returned idle connection that has not expired and that
    /// the upstream has not closed meanwhile.
    ///
    /// An upstream closes idle connections on its own keep-alive timeout (often
    /// shorter than ours); its FIN has reached the reactor by the time a request
    /// comes seconds later, so such a connection is closed here and the next one
    /// tried, rather than failing a request that cannot be sent again (a streamed
    /// body). Only a close racing the request itself is left to the retry of
    /// replayable requests.
    pub(crate) fn take(&self) -> Option<Box<H1Conn>> {
        loop {
            let mut idle = self.lock();
            let mut conn = idle.stack.pop_back()?;
            if self.expired(self.epoch.load(Ordering::Relaxed), &conn) {
                // The top is the youngest: when it has expired, all have (no sweep ran).
                let expired = std::mem::take(&mut idle.stack);
                drop(idle);
                drop((conn, expired));
                return None;
            }
            drop(idle);
            if !conn.stream.is_stale() {
                return Some(conn);
            }
        }
    }

    /// Returns a connection to the top; closes it when the pool is closed, and the
    /// oldest idle one when the pool is full.
    pub(crate) fn put(&self, mut conn: Box<H1Conn>) {
        let mut idle = self.lock();
        if idle.closed {
            drop(idle);
            return;
        }
        conn.idle_epoch = self.epoch.load(Ordering::Relaxed);
        idle.stack.push_back(conn);
        let oldest = if idle.stack.len() > self.max_idle {
            idle.stack.pop_front()
        } else {
            None
        };
        let wake_here = idle.waiters != 0;
        drop(idle);
        drop(oldest);
        if wake_here {
            self.idle_ready.notify_one();
        } else if let Some(limit) = &self.limit {
            limit.went_idle();
        }
    }

    /// Registers a request waiting for a connection of this pool: returns wake it
    /// through [`H1Pool::idle_ready`] until the registration drops.
    pub(crate) fn wait_for_idle(&self) -> IdleWaiter<'_> {
        let mut idle = self.lock();
        idle.waiters = idle.waiters.saturating_add(1);
        drop(idle);
        IdleWaiter(self)
    }

    /// Woken when a connection is returned while a request is registered
    /// ([`H1Pool::wait_for_idle`]); create and enable it before [`H1Pool::take`].
    pub(crate) fn idle_ready(&self) -> tokio::sync::futures::Notified<'_> {
        self.idle_ready.notified()
    }

    /// Takes the oldest idle connection (the next to expire), to close it.
    pub(crate) fn take_oldest(&self) -> Option<Box<H1Conn>> {
        self.lock().stack.pop_front()
    }

    /// Counts a sweep and closes the connections idle for longer than the idle
    /// timeout, from the bottom of the stack up to the first live one.
    pub(crate) fn evict_expired(&self) {
        let epoch = self.epoch.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let mut idle = self.lock();
        let n = idle
            .stack
            .iter()
            .take_while(|c| self.expired(epoch, c))
            .count();
        if n == 0 {
            return;
        }
        let expired: Vec<_> = idle.stack.drain(..n).collect();
        drop(idle);
        drop(expired);
    }

    /// Closes every idle connection and refuses returned ones.
    pub(crate) fn close(&self) {
        let mut idle = self.lock();
        idle.closed = true;
        let all = std::mem::take(&mut idle.stack);
        drop(idle);
        drop(all);
    }

    /// Idle connections now.
    pub(crate) fn idle_len(&self) -> usize {
        self.lock().stack.len()
    }
}
