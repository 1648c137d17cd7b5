//! The HTTP/3 listener's counters: atomics shared by its connection and request
//! tasks, read as a snapshot.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters of one [`H3Listener`](super::H3Listener), updated with relaxed atomics;
/// [`H3Stats::snapshot`] reads them all.
///
/// # Example
/// ```
/// let stats = proxy_quic::h3::H3Stats::default();
/// assert_eq!(stats.snapshot().requests, 0);
/// ```
#[derive(Debug, Default)]
pub struct H3Stats {
    handshakes: AtomicU64,
    handshake_failures: AtomicU64,
    connections_active: AtomicU64,
    requests: AtomicU64,
    requests_active: AtomicU64,
    malformed: AtomicU64,
    stack_errors: AtomicU64,
    responses_reset: AtomicU64,
    goaways: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct H3StatsSnapshot {
    /// QUIC handshakes completed.
    pub handshakes: u64,
    /// QUIC handshakes that failed or timed out (or were cut by a drain).
    pub handshake_failures: u64,
    /// Connections open now.
    pub connections_active: u64,
    /// Requests handed to the stack.
    pub requests: u64,
    /// Requests being handled now.
    pub requests_active: u64,
    /// Requests refused as malformed (a bad head, or a body that disagrees with
    /// its `content-length`).
    pub malformed: u64,
    /// Requests whose stack returned an error (answered 5xx).
    pub stack_errors: u64,
    /// Responses reset midway because their body failed.
    pub responses_reset: u64,
    /// Connections sent GOAWAY by a drain.
    pub goaways: u64,
}

impl H3Stats {
    /// All the counters, each read once (not one atomic snapshot of all).
    pub fn snapshot(&self) -> H3StatsSnapshot {
        H3StatsSnapshot {
            handshakes: self.handshakes.load(Relaxed),
            handshake_failures: self.handshake_failures.load(Relaxed),
            connections_active: self.connections_active.load(Relaxed),
            requests: self.requests.load(Relaxed),
            requests_active: self.requests_active.load(Relaxed),
            malformed: self.malformed.load(Relaxed),
            stack_errors: self.stack_errors.load(Relaxed),
            responses_reset: self.responses_reset.load(Relaxed),
            goaways: self.goaways.load(Relaxed),
        }
    }

    pub(super) fn handshake_failed(&self) {
        self.handshake_failures.fetch_add(1, Relaxed);
    }

    /// Counts a connection up; it counts down when the guard drops.
    pub(super) fn connection(&self) -> Active<'_> {
        self.handshakes.fetch_add(1, Relaxed);
        self.connections_active.fetch_add(1, Relaxed);
        Active(&self.connections_active)
    }

    /// Counts a request up; it counts down when the guard drops.
    pub(super) fn request(&self) -> Active<'_> {
        self.requests.fetch_add(1, Relaxed);
        self.requests_active.fetch_add(1, Relaxed);
        Active(&self.requests_active)
    }

    pub(super) fn malformed(&self) {
        self.malformed.fetch_add(1, Relaxed);
    }

    pub(super) fn stack_error(&self) {
        self.stack_errors.fetch_add(1, Relaxed);
    }

    pub(super) fn response_reset(&self) {
        self.responses_reset.fetch_add(1, Relaxed);
    }

    pub(super) fn goaway(&self) {
        self.goaways.fetch_add(1, Relaxed);
    }
}

/// Decrements a gauge when dropped.
#[derive(Debug)]
pub(super) struct Active<'a>(&'a AtomicU64);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_follow_their_guards() {
        let stats = H3Stats::default();
        let conn = stats.connection();
        let req = stats.request();
        stats.malformed();
        let s = stats.snapshot();
        assert_eq!((s.handshakes, s.connections_active), (1, 1));
        assert_eq!((s.requests, s.requests_active, s.malformed), (1, 1, 1));
        drop((conn, req));
        let s = stats.snapshot();
        assert_eq!(
            (s.connections_active, s.requests_active, s.requests),
            (0, 0, 1)
        );
    }
}
