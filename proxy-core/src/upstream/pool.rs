//! The idle-connection pool of one HTTP/1.1 endpoint: a lock-free queue, a count of
//! open connections against the configured maximum, idle expiry.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc,
    },
    time::Duration,
};

use crossbeam_queue::ArrayQueue;

use super::h1::H1Conn;
use crate::metrics::ConnStats;

/// Counts one open upstream connection until dropped.
#[derive(Debug)]
pub(crate) struct OpenGuard(Arc<OpenCount>);

impl OpenGuard {
    /// Counts `n` bytes received from the endpoint.
    pub(crate) fn count_rx(&self, n: usize) {
        self.0.stats.count_rx(n);
    }

    /// Counts `n` bytes sent to the endpoint.
    pub(crate) fn count_tx(&self, n: usize) {
        self.0.stats.count_tx(n);
    }
}

impl crate::net::ByteCounter for OpenGuard {
    fn rx(&self, n: usize) {
        self.0.stats.count_rx(n);
    }
    fn tx(&self, n: usize) {
        self.0.stats.count_tx(n);
    }
}

#[derive(Debug, Default)]
pub(crate) struct OpenCount {
    open: AtomicU32,
    pub(crate) stats: ConnStats,
}

impl OpenCount {
    /// Reserves a connection slot if fewer than `max` are open.
    pub(crate) fn try_open(self: &Arc<Self>, max: u32) -> Option<OpenGuard> {
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
                    return Some(OpenGuard(self.clone()));
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
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.stats.close();
    }
}

/// How often idle pooled connections are checked for expiry.
pub(crate) const IDLE_SWEEP: Duration = Duration::from_secs(5);

/// Idle connections of one endpoint, most recently used first out.
///
/// Expiry is counted in sweeps ([`IDLE_SWEEP`]) rather than read from the clock, so
/// taking and returning a connection costs no clock read: a connection is closed
/// between one idle timeout and one idle timeout plus a sweep after its last use.
#[derive(Debug)]
pub(crate) struct H1Pool {
    idle: ArrayQueue<Box<H1Conn>>,
    /// Sweeps so far; a connection remembers the sweep it went idle in.
    epoch: AtomicU32,
    /// Sweeps a connection may stay idle.
    max_idle_sweeps: u32,
    /// Set when the endpoint is gone: returned connections are closed, which also
    /// breaks the pool <-> connection reference cycle.
    closed: AtomicBool,
}

impl H1Pool {
    pub(crate) fn new(max_idle: u32, idle_timeout: Duration) -> Self {
        let sweeps = idle_timeout
            .as_millis()
            .div_ceil(IDLE_SWEEP.as_millis())
            .max(1);
        Self {
            idle: ArrayQueue::new(max_idle.max(1) as usize),
            epoch: AtomicU32::new(0),
            max_idle_sweeps: u32::try_from(sweeps).unwrap_or(u32::MAX),
            closed: AtomicBool::new(false),
        }
    }

    fn expired(&self, conn: &H1Conn) -> bool {
        self.epoch
            .load(Ordering::Relaxed)
            .wrapping_sub(conn.idle_epoch)
            >= self.max_idle_sweeps
    }

    /// Takes a live idle connection, dropping expired ones.
    pub(crate) fn take(&self) -> Option<Box<H1Conn>> {
        while let Some(conn) = self.idle.pop() {
            if !self.expired(&conn) {
                return Some(conn);
            }
        }
        None
    }

    /// Returns a connection; closes it when the pool is full or closed.
    pub(crate) fn put(&self, mut conn: Box<H1Conn>) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        conn.idle_epoch = self.epoch.load(Ordering::Relaxed);
        let _ = self.idle.push(conn);
    }

    /// Counts a sweep and closes connections idle for longer than the idle timeout.
    pub(crate) fn evict_expired(&self) {
        self.epoch.fetch_add(1, Ordering::Relaxed);
        for _ in 0..self.idle.len() {
            match self.idle.pop() {
                Some(conn) if !self.expired(&conn) => {
                    if self.idle.push(conn).is_err() {
                        break;
                    }
                }
                Some(_) => {}
                None => break,
            }
        }
    }

    /// Closes every idle connection and refuses returned ones.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        while self.idle.pop().is_some() {}
    }

    /// Idle connections now.
    pub(crate) fn idle_len(&self) -> usize {
        self.idle.len()
    }
}
