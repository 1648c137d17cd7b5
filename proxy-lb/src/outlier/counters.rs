//! Per-endpoint outlier counters and ejection state: atomics only, updated on the
//! request path.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};

use super::math::{EjectionReason, IntervalStats};

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
