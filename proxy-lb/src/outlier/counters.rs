//! Per-endpoint outlier counters and ejection state: atomics only, updated on the
//! request path.

use std::{
    sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed},
    time::Duration,
};

use proxy_core::config::Percent;

use super::math::{EjectionReason, IntervalStats, LatencyStats};

/// Buckets of a [`LatencyHistogram`]: below 64 µs, then four per octave up to 2^27 µs
/// (about 134 s); longer latencies fall in the last one.
const BUCKETS: usize = 85;

/// Attempt latencies of one endpoint over the current interval: a log-scale histogram
/// (about 19% wide buckets) of atomics, so recording is lock-free and allocation-free.
#[derive(Debug)]
pub struct LatencyHistogram {
    buckets: Box<[AtomicU32]>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU32::new(0)).collect(),
        }
    }
}

impl LatencyHistogram {
    fn bucket(latency: Duration) -> usize {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        if us < 64 {
            return 0;
        }
        let lg = 63 - us.leading_zeros() as usize; // 6 or more
        let frac = ((us >> (lg - 2)) & 3) as usize;
        ((lg - 6) * 4 + frac + 1).min(BUCKETS - 1)
    }

    /// The upper bound of bucket `i`.
    fn upper(i: usize) -> Duration {
        if i == 0 {
            return Duration::from_micros(64);
        }
        let (lg, frac) = ((i - 1) / 4 + 6, (i - 1) % 4);
        Duration::from_micros(((5 + frac) as u64) << (lg - 2))
    }

    /// Records one latency.
    pub fn record(&self, latency: Duration) {
        self.buckets[Self::bucket(latency)].fetch_add(1, Relaxed);
    }

    /// Takes (and resets) the interval's latencies: how many, and the `percentile`
    /// of them (a bucket's upper bound).
    pub fn take(&self, percentile: Percent) -> (u64, Duration) {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| u64::from(b.swap(0, Relaxed)))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return (0, Duration::ZERO);
        }
        // The smallest latency at or above `percentile` of them: rank ceil(p x total).
        let p = u128::from(percentile.per_million());
        let rank = ((p * u128::from(total)).div_ceil(1_000_000)).max(1);
        let mut seen = 0u128;
        for (i, c) in counts.iter().enumerate() {
            seen += u128::from(*c);
            if seen >= rank {
                return (total, Self::upper(i));
            }
        }
        (total, Self::upper(BUCKETS - 1))
    }
}

/// One attempt's result as outlier detection sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// A response below 500.
    Success,
    /// A 5xx response or a local failure; `gateway` for 502/503/504, connect
    /// failures, timeouts and resets.
    Failure {
        /// Whether it is a gateway failure.
        gateway: bool,
    },
}

/// The consecutive-failure thresholds (0: off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive 5xx.
    pub consecutive_5xx: u32,
    /// Consecutive gateway failures.
    pub consecutive_gateway: u32,
}

/// Counters and ejection state of one endpoint.
#[derive(Debug, Default)]
pub struct EndpointCounters {
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    interval_success: AtomicU64,
    interval_total: AtomicU64,
    /// Whether this detector has the endpoint ejected.
    pub(crate) ejected: AtomicBool,
    /// Ejections so far (decays while healthy).
    pub(crate) times_ejected: AtomicU32,
    /// When the current ejection began (ms since the detector's epoch).
    pub(crate) ejected_at_ms: AtomicU64,
    /// When the endpoint last came back or last decayed (ms since the epoch).
    pub(crate) last_change_ms: AtomicU64,
    /// The last ejection's reason ([`EjectionReason`] as u8; 0: none).
    pub(crate) reason: AtomicU8,
    /// An ejection not yet reported to the healing sink.
    pub(crate) pending_report: AtomicBool,
    /// Failed attempts to report the current ejection.
    pub(crate) report_failures: AtomicU32,
    /// A readmission probe is running.
    pub(crate) probing: AtomicBool,
    /// The healing sink asked for removal.
    pub(crate) removed: AtomicBool,
    /// Latencies of the interval, when latency ejection is on.
    pub(crate) latency: Option<LatencyHistogram>,
    /// For a latency ejection: the cutoff (µs) the readmission probe must answer within.
    pub(crate) latency_cutoff_us: AtomicU64,
}

impl EndpointCounters {
    /// Records one attempt; returns the reason when a consecutive threshold is reached
    /// (again at every further multiple of it, so a refused ejection is retried).
    pub fn record(&self, attempt: Attempt, t: Thresholds) -> Option<EjectionReason> {
        self.interval_total.fetch_add(1, Relaxed);
        match attempt {
            Attempt::Success => {
                self.interval_success.fetch_add(1, Relaxed);
                // Loads first: a store per success would bounce the cache line.
                if self.consecutive_5xx.load(Relaxed) != 0 {
                    self.consecutive_5xx.store(0, Relaxed);
                }
                if self.consecutive_gateway.load(Relaxed) != 0 {
                    self.consecutive_gateway.store(0, Relaxed);
                }
                None
            }
            Attempt::Failure { gateway } => {
                let n5 = self.consecutive_5xx.fetch_add(1, Relaxed) + 1;
                let ngw = if gateway {
                    self.consecutive_gateway.fetch_add(1, Relaxed) + 1
                } else {
                    if self.consecutive_gateway.load(Relaxed) != 0 {
                        self.consecutive_gateway.store(0, Relaxed);
                    }
                    0
                };
                let hit = |n: u32, limit: u32| limit != 0 && n >= limit && n.is_multiple_of(limit);
                if hit(n5, t.consecutive_5xx) {
                    Some(EjectionReason::Consecutive5xx)
                } else if hit(ngw, t.consecutive_gateway) {
                    Some(EjectionReason::ConsecutiveGatewayFailure)
                } else {
                    None
                }
            }
        }
    }

    /// Counters that also measure latency (for latency ejection).
    pub fn with_latency() -> Self {
        Self {
            latency: Some(LatencyHistogram::default()),
            ..Self::default()
        }
    }

    /// Takes (and resets) the interval's latencies, when measured.
    pub fn take_latency(&self, index: usize, percentile: Percent) -> Option<LatencyStats> {
        let (count, percentile) = self.latency.as_ref()?.take(percentile);
        Some(LatencyStats {
            index,
            count,
            percentile,
        })
    }

    /// Takes (and resets) the interval's counts.
    pub fn take_interval(&self, index: usize) -> IntervalStats {
        IntervalStats {
            index,
            success: self.interval_success.swap(0, Relaxed),
            total: self.interval_total.swap(0, Relaxed),
        }
    }

    /// Resets the consecutive counters (on readmission).
    pub fn reset_consecutive(&self) {
        self.consecutive_5xx.store(0, Relaxed);
        self.consecutive_gateway.store(0, Relaxed);
    }

    /// Consecutive 5xx so far.
    pub fn consecutive_5xx(&self) -> u32 {
        self.consecutive_5xx.load(Relaxed)
    }

    /// Consecutive gateway failures so far.
    pub fn consecutive_gateway(&self) -> u32 {
        self.consecutive_gateway.load(Relaxed)
    }

    /// The last ejection's reason.
    pub fn last_reason(&self) -> Option<EjectionReason> {
        EjectionReason::from_u8(self.reason.load(Relaxed))
    }
}
