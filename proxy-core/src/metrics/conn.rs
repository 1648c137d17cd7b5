//! Connection stats of a listener or endpoint, and their Prometheus families.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

use super::per_worker::{sum, Padded, PerWorker};

/// Connection counters of one listener or endpoint.
///
/// The counters are counted in the calling worker's shard (see [`PerWorker`]) and
/// summed when read; the open-connections gauge is one shared atomic.
#[derive(Debug, Default)]
pub struct ConnStats {
    shards: PerWorker<ConnShard>,
    /// Connections open now: one atomic shared by all workers, because the accept
    /// loop reads it against `max_connections` for every connection it accepts (a
    /// per-worker sum would cost a load per shard there). It changes once per
    /// connection, not per request or per read.
    active: Padded<AtomicU64>,
}

/// The connection counts of one worker.
#[derive(Debug, Default)]
struct ConnShard {
    /// Connections opened.
    opened: AtomicU64,
    /// Bytes received from the peer.
    rx_bytes: AtomicU64,
    /// Bytes sent to the peer.
    tx_bytes: AtomicU64,
    /// Connections refused or closed by a protective limit.
    rejected: AtomicU64,
}

impl ConnStats {
    /// Counts `n` bytes received from a peer.
    #[inline]
    pub(crate) fn count_rx(&self, n: usize) {
        self.shards.local().rx_bytes.fetch_add(n as u64, Relaxed);
    }

    /// Counts `n` bytes sent to a peer.
    #[inline]
    pub(crate) fn count_tx(&self, n: usize) {
        self.shards.local().tx_bytes.fetch_add(n as u64, Relaxed);
    }

    /// Connections opened.
    pub fn opened(&self) -> u64 {
        sum(self.shards.iter().map(|s| &s.opened))
    }

    /// Connections open now.
    pub fn active(&self) -> u64 {
        self.active.load(Relaxed)
    }

    /// Bytes received from peers.
    pub fn rx_bytes(&self) -> u64 {
        sum(self.shards.iter().map(|s| &s.rx_bytes))
    }

    /// Bytes sent to peers.
    pub fn tx_bytes(&self) -> u64 {
        sum(self.shards.iter().map(|s| &s.tx_bytes))
    }

    /// Connections refused or closed by a protective limit.
    pub fn rejected(&self) -> u64 {
        sum(self.shards.iter().map(|s| &s.rejected))
    }

    /// Counts an opened connection.
    pub fn open(&self) {
        self.shards.local().opened.fetch_add(1, Relaxed);
        self.active.fetch_add(1, Relaxed);
    }

    /// Counts a closed connection.
    pub fn close(&self) {
        self.active.fetch_sub(1, Relaxed);
    }

    /// Counts a connection refused or closed by a protective limit.
    pub fn reject(&self) {
        self.shards.local().rejected.fetch_add(1, Relaxed);
    }
}

/// Appends connection metric families to `out` in Prometheus text.
pub fn render_conns(out: &mut String, prefix: &str, items: &[(String, &ConnStats)]) {
    type Family = (&'static str, &'static str, fn(&ConnStats) -> u64);
    let families: [Family; 5] = [
        ("connections_total", "counter", ConnStats::opened),
        ("connections_active", "gauge", ConnStats::active),
        ("connections_rejected_total", "counter", ConnStats::rejected),
        ("rx_bytes_total", "counter", ConnStats::rx_bytes),
        ("tx_bytes_total", "counter", ConnStats::tx_bytes),
    ];
    if items.is_empty() {
        return;
    }
    for (family, kind, get) in families {
        let _ = writeln!(out, "# TYPE {prefix}_{family} {kind}");
        for (l, s) in items {
            let _ = writeln!(out, "{prefix}_{family}{{{l}}} {}", get(s));
        }
    }
}
