//! The latency histogram: fixed buckets, counted per worker, summed when rendered.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use super::per_worker::PerWorker;

/// Upper bounds of the latency histogram buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const BUCKET_MICROS: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// A cumulative latency histogram with fixed buckets ([`LATENCY_BUCKETS`]), counted
/// in the calling worker's shard and summed over shards when read.
#[derive(Debug, Default)]
pub struct Histogram(PerWorker<HistogramShard>);

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        self.0.local().observe(d);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.totals().count()
    }

    pub(super) fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for shard in self.0.iter() {
            t.add(shard);
        }
        t
    }
}

/// The histogram counts of one worker: one count per bucket (not cumulative, the last
/// one past the largest bound) and the sum of the observations.
#[derive(Debug, Default)]
pub(super) struct HistogramShard {
    buckets: [AtomicU64; 15],
    sum_micros: AtomicU64,
}

impl HistogramShard {
    #[inline]
    pub(super) fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BUCKET_MICROS.partition_point(|&b| b < us);
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(us, Relaxed);
    }

    /// Adds the counts of `totals` (a reload carrying a route's counts over).
    pub(super) fn add_totals(&self, totals: &Totals) {
        for (a, b) in self.buckets.iter().zip(totals.buckets) {
            a.fetch_add(b, Relaxed);
        }
        self.sum_micros.fetch_add(totals.sum_micros, Relaxed);
    }
}

/// Histogram counts summed over workers.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Totals {
    buckets: [u64; 15],
    sum_micros: u64,
}

impl Totals {
    /// Adds the counts of one worker's shard.
    pub(super) fn add(&mut self, shard: &HistogramShard) {
        for (t, b) in self.buckets.iter_mut().zip(&shard.buckets) {
            *t = t.wrapping_add(b.load(Relaxed));
        }
        self.sum_micros = self.sum_micros.wrapping_add(shard.sum_micros.load(Relaxed));
    }

    /// Number of observations.
    pub(super) fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Appends the `_bucket`, `_sum` and `_count` lines of `name` with `labels`.
    pub(super) fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (le, n) in LATENCY_BUCKETS.iter().zip(self.buckets) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        cumulative += self.buckets[14];
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_micros as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}
