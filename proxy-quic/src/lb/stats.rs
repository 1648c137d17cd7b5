//! The forwarder's counters: atomics shared by its tasks, read as a snapshot.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::packet::ParseError;
use super::table::RouteBy;
use crate::Unroutable;

/// The forwarder's counters, updated with relaxed atomics on the packet path.
/// [`ForwarderStats::snapshot`] reads them all.
///
/// # Example
/// ```
/// let stats = proxy_quic::lb::ForwarderStats::default();
/// assert_eq!(stats.snapshot().routed_by_cid, 0);
/// ```
#[derive(Debug, Default)]
pub struct ForwarderStats {
    received: AtomicU64,
    routed_by_cid: AtomicU64,
    routed_by_hash: AtomicU64,
    unroutable: [AtomicU64; 5],
    unknown_server: AtomicU64,
    unknown_version: AtomicU64,
    dropped: [AtomicU64; 5],
    dropped_oversize: AtomicU64,
    dropped_flow_limit: AtomicU64,
    dropped_send: AtomicU64,
    replies: AtomicU64,
    dropped_reply_unknown_source: AtomicU64,
    dropped_spoofed: AtomicU64,
    dropped_bad_encapsulation: AtomicU64,
    flows_opened: AtomicU64,
    flows_expired: AtomicU64,
    flows_active: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Datagrams received from clients.
    pub received: u64,
    /// Packets routed by the server ID in their connection ID.
    pub routed_by_cid: u64,
    /// Packets routed by the 4-tuple hash (every reason below).
    pub routed_by_hash: u64,
    /// Of those, connection IDs that do not decode, by [`Unroutable`] reason:
    /// `empty`, `reserved`, `unknown_config`, `too_short`, `length_mismatch`.
    pub unroutable: [u64; 5],
    /// Of those, connection IDs that decode to a server ID with no address (most
    /// are clients' own Initial connection IDs).
    pub unknown_server: u64,
    /// Of those, long headers of a version other than 1 and 2.
    pub unknown_version: u64,
    /// Datagrams dropped by the parser, by [`ParseError`]: `empty`, `truncated`,
    /// `cid_too_long`, `server_only`, `small_initial`.
    pub dropped: [u64; 5],
    /// Datagrams larger than the forwarder's buffer, dropped (either direction).
    pub dropped_oversize: u64,
    /// Datagrams of a new 4-tuple dropped because the flow table (or the source
    /// IP's share of it) is full.
    pub dropped_flow_limit: u64,
    /// Datagrams the socket would not take (buffer full) or failed to send.
    pub dropped_send: u64,
    /// Datagrams from servers forwarded to clients (stateless resets among them).
    pub replies: u64,
    /// Datagrams on a flow's socket from an address that is no server, dropped.
    pub dropped_reply_unknown_source: u64,
    /// Encapsulated mode: datagrams carrying the encapsulation header from an
    /// address that is no server, dropped (only servers may send them).
    pub dropped_spoofed: u64,
    /// Encapsulated mode: datagrams from a server without a valid encapsulation
    /// header, dropped.
    pub dropped_bad_encapsulation: u64,
    /// Flows created.
    pub flows_opened: u64,
    /// Flows removed after their idle timeout.
    pub flows_expired: u64,
    /// Flows now.
    pub flows_active: u64,
}

impl StatsSnapshot {
    /// The labels of [`StatsSnapshot::unroutable`], in order.
    pub const UNROUTABLE_LABELS: [&'static str; 5] = [
        "empty",
        "reserved",
        "unknown_config",
        "too_short",
        "length_mismatch",
    ];
    /// The labels of [`StatsSnapshot::dropped`], in order.
    pub const DROPPED_LABELS: [&'static str; 5] = [
        "empty",
        "truncated",
        "cid_too_long",
        "server_only",
        "small_initial",
    ];

    /// Every datagram dropped on its way from a client, whatever the reason.
    ///
    /// # Example
    /// ```
    /// assert_eq!(proxy_quic::lb::StatsSnapshot::default().dropped_total(), 0);
    /// ```
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum::<u64>() + self.dropped_flow_limit + self.dropped_spoofed
    }
}

fn unroutable_index(reason: Unroutable) -> usize {
    match reason {
        Unroutable::Empty => 0,
        Unroutable::Reserved => 1,
        Unroutable::UnknownConfig => 2,
        Unroutable::TooShort => 3,
        Unroutable::LengthMismatch => 4,
    }
}

fn parse_error_index(err: ParseError) -> usize {
    match err {
        ParseError::Empty => 0,
        ParseError::Truncated => 1,
        ParseError::CidTooLong => 2,
        ParseError::ServerOnly => 3,
        ParseError::SmallInitial => 4,
    }
}

// === impl ForwarderStats ===

impl ForwarderStats {
    /// Reads every counter.
    ///
    /// # Example
    /// ```
    /// let s = proxy_quic::lb::ForwarderStats::default().snapshot();
    /// assert_eq!(s.unroutable, [0; 5]);
    /// ```
    pub fn snapshot(&self) -> StatsSnapshot {
        let load = |a: &AtomicU64| a.load(Relaxed);
        StatsSnapshot {
            received: load(&self.received),
            routed_by_cid: load(&self.routed_by_cid),
            routed_by_hash: load(&self.routed_by_hash),
            unroutable: self.unroutable.each_ref().map(load),
            unknown_server: load(&self.unknown_server),
            unknown_version: load(&self.unknown_version),
            dropped: self.dropped.each_ref().map(load),
            dropped_oversize: load(&self.dropped_oversize),
            dropped_flow_limit: load(&self.dropped_flow_limit),
            dropped_send: load(&self.dropped_send),
            replies: load(&self.replies),
            dropped_reply_unknown_source: load(&self.dropped_reply_unknown_source),
            dropped_spoofed: load(&self.dropped_spoofed),
            dropped_bad_encapsulation: load(&self.dropped_bad_encapsulation),
            flows_opened: load(&self.flows_opened),
            flows_expired: load(&self.flows_expired),
            flows_active: load(&self.flows_active),
        }
    }

    pub(crate) fn received(&self) {
        self.received.fetch_add(1, Relaxed);
    }

    pub(crate) fn routed(&self, by: RouteBy) {
        let counter = match by {
            RouteBy::Cid => return inc(&self.routed_by_cid),
            RouteBy::Hash(reason) => &self.unroutable[unroutable_index(reason)],
            RouteBy::UnknownServer => &self.unknown_server,
            RouteBy::UnknownVersion => &self.unknown_version,
        };
        inc(counter);
        inc(&self.routed_by_hash);
    }

    pub(crate) fn parse_error(&self, err: ParseError) {
        inc(&self.dropped[parse_error_index(err)]);
    }

    pub(crate) fn oversize(&self) {
        inc(&self.dropped_oversize);
    }

    pub(crate) fn flow_limit(&self) {
        inc(&self.dropped_flow_limit);
    }

    pub(crate) fn send_failed(&self) {
        inc(&self.dropped_send);
    }

    pub(crate) fn reply(&self) {
        inc(&self.replies);
    }

    pub(crate) fn reply_unknown_source(&self) {
        inc(&self.dropped_reply_unknown_source);
    }

    pub(crate) fn spoofed(&self) {
        inc(&self.dropped_spoofed);
    }

    pub(crate) fn bad_encapsulation(&self) {
        inc(&self.dropped_bad_encapsulation);
    }

    pub(crate) fn flow_opened(&self) {
        inc(&self.flows_opened);
        inc(&self.flows_active);
    }

    pub(crate) fn flow_expired(&self) {
        inc(&self.flows_expired);
        self.flows_active.fetch_sub(1, Relaxed);
    }
}

fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_the_enums() {
        for (i, r) in [
            Unroutable::Empty,
            Unroutable::Reserved,
            Unroutable::UnknownConfig,
            Unroutable::TooShort,
            Unroutable::LengthMismatch,
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(
                StatsSnapshot::UNROUTABLE_LABELS[unroutable_index(r)],
                r.as_str()
            );
            assert_eq!(unroutable_index(r), i);
        }
        for e in [
            ParseError::Empty,
            ParseError::Truncated,
            ParseError::CidTooLong,
            ParseError::ServerOnly,
            ParseError::SmallInitial,
        ] {
            assert_eq!(
                StatsSnapshot::DROPPED_LABELS[parse_error_index(e)],
                e.as_str()
            );
        }
    }

    #[test]
    fn hash_routes_count_their_reason_and_the_total() {
        let s = ForwarderStats::default();
        s.routed(RouteBy::Cid);
        s.routed(RouteBy::Hash(Unroutable::Reserved));
        s.routed(RouteBy::UnknownServer);
        let snap = s.snapshot();
        assert_eq!((snap.routed_by_cid, snap.routed_by_hash), (1, 2));
        assert_eq!(snap.unroutable, [0, 1, 0, 0, 0]);
        assert_eq!(snap.unknown_server, 1);
    }
}
