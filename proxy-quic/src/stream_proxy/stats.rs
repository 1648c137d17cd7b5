//! The counters of a QUIC stream to TCP proxy.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters of a [`StreamProxy`](super::StreamProxy): relaxed atomics, shared with
/// the connections it serves. Read them with [`snapshot`](Self::snapshot).
#[derive(Debug, Default)]
pub struct StreamProxyStats {
    pub(super) handshakes: AtomicU64,
    pub(super) handshake_failures: AtomicU64,
    pub(super) connections_active: AtomicU64,
    pub(super) connections_refused: AtomicU64,
    pub(super) streams: AtomicU64,
    pub(super) streams_active: AtomicU64,
    pub(super) connect_failures: AtomicU64,
    pub(super) idle_timeouts: AtomicU64,
    pub(super) upstream_errors: AtomicU64,
    pub(super) client_errors: AtomicU64,
    pub(super) bytes_up: AtomicU64,
    pub(super) bytes_down: AtomicU64,
}

/// The counters of a [`StreamProxyStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamProxyStatsSnapshot {
    /// QUIC handshakes completed.
    pub handshakes: u64,
    /// QUIC handshakes that failed (a wrong ALPN among them).
    pub handshake_failures: u64,
    /// Connections open now.
    pub connections_active: u64,
    /// Connections refused because `max_connections` were open.
    pub connections_refused: u64,
    /// Bidirectional streams accepted.
    pub streams: u64,
    /// Streams being proxied now.
    pub streams_active: u64,
    /// Streams reset because no upstream connection could be made.
    pub connect_failures: u64,
    /// Streams closed by their idle timeout.
    pub idle_timeouts: u64,
    /// Streams ended by an upstream read or write error.
    pub upstream_errors: u64,
    /// Streams ended by the client (reset, stop, lost connection).
    pub client_errors: u64,
    /// Bytes copied from clients to upstreams.
    pub bytes_up: u64,
    /// Bytes copied from upstreams to clients.
    pub bytes_down: u64,
}

impl StreamProxyStats {
    /// All the counters, each read once (not one atomic snapshot of all).
    pub fn snapshot(&self) -> StreamProxyStatsSnapshot {
        StreamProxyStatsSnapshot {
            handshakes: self.handshakes.load(Relaxed),
            handshake_failures: self.handshake_failures.load(Relaxed),
            connections_active: self.connections_active.load(Relaxed),
            connections_refused: self.connections_refused.load(Relaxed),
            streams: self.streams.load(Relaxed),
            streams_active: self.streams_active.load(Relaxed),
            connect_failures: self.connect_failures.load(Relaxed),
            idle_timeouts: self.idle_timeouts.load(Relaxed),
            upstream_errors: self.upstream_errors.load(Relaxed),
            client_errors: self.client_errors.load(Relaxed),
            bytes_up: self.bytes_up.load(Relaxed),
            bytes_down: self.bytes_down.load(Relaxed),
        }
    }
}

/// Adds one to `counter` and subtracts it again when dropped.
pub(super) struct Active<'a>(&'a AtomicU64);

impl<'a> Active<'a> {
    pub(super) fn new(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Relaxed);
        Self(counter)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}
