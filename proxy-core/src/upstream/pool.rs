//! The idle-connection pool of one HTTP/1.1 endpoint: a lock-free queue, a count of
//! open connections against the configured maximum, idle expiry.

use std::{
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::BytesMut;
use crossbeam_queue::ArrayQueue;
use tokio::{net::TcpStream, time::Instant};

use crate::metrics::ConnStats;

/// An idle pooled connection.
#[derive(Debug)]
pub(crate) struct Idle {
    pub(crate) stream: TcpStream,
    pub(crate) buf: BytesMut,
    pub(crate) wbuf: BytesMut,
    pub(crate) open: OpenGuard,
    pub(crate) since: Instant,
}

/// Counts one open upstream connection until dropped.
#[derive(Debug)]
pub(crate) struct OpenGuard(Arc<OpenCount>);

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
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
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

/// Idle connections of one endpoint.
#[derive(Debug)]
pub(crate) struct H1Pool {
    idle: ArrayQueue<Idle>,
    idle_timeout: Duration,
}

impl H1Pool {
    pub(crate) fn new(max_idle: u32, idle_timeout: Duration) -> Self {
        Self {
            idle: ArrayQueue::new(max_idle.max(1) as usize),
            idle_timeout,
        }
    }

    /// Takes a live idle connection, dropping expired ones.
    pub(crate) fn take(&self) -> Option<Idle> {
        let now = Instant::now();
        while let Some(idle) = self.idle.pop() {
            if now.duration_since(idle.since) < self.idle_timeout {
                return Some(idle);
            }
        }
        None
    }

    /// Returns a connection; closes it when the pool is full.
    pub(crate) fn put(&self, idle: Idle) {
        let _ = self.idle.push(idle);
    }

    /// Closes connections idle for longer than the idle timeout.
    pub(crate) fn evict_expired(&self) {
        let now = Instant::now();
        for _ in 0..self.idle.len() {
            match self.idle.pop() {
                Some(idle) if now.duration_since(idle.since) < self.idle_timeout => {
                    if self.idle.push(idle).is_err() {
                        break;
                    }
                }
                Some(_) => {}
                None => break,
            }
        }
    }

    /// Idle connections now.
    pub(crate) fn idle_len(&self) -> usize {
        self.idle.len()
    }
}
