//! Ejection arithmetic: ejection time, the max-ejection and panic limits, success-rate
//! and failure-percentage outliers. Pure functions.

use std::time::Duration;

use proxy_core::config::Percent;

use super::config::{FailurePercentageConfig, LatencyConfig, SuccessRateConfig};

/// `Percent::per_million` of 100%.
const MILLION: u64 = 1_000_000;

/// Why an endpoint was ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EjectionReason {
    /// Consecutive 5xx responses (or local failures).
    Consecutive5xx = 1,
    /// Consecutive gateway failures.
    ConsecutiveGatewayFailure = 2,
    /// Success rate far below the cluster's.
    SuccessRate = 3,
    /// Failure percentage above the threshold.
    FailurePercentage = 4,
    /// Latency far above the cluster's.
    Latency = 5,
}

impl EjectionReason {
    /// All reasons, in order.
    pub const ALL: [EjectionReason; 5] = [
        Self::Consecutive5xx,
        Self::ConsecutiveGatewayFailure,
        Self::SuccessRate,
        Self::FailurePercentage,
        Self::Latency,
    ];

    /// The name used in metrics, status and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Consecutive5xx => "consecutive_5xx",
            Self::ConsecutiveGatewayFailure => "consecutive_gateway_failure",
            Self::SuccessRate => "success_rate",
            Self::FailurePercentage => "failure_percentage",
            Self::Latency => "latency",
        }
    }

    pub(crate) fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|r| *r as u8 == v)
    }

    pub(crate) fn index(self) -> usize {
        self as usize - 1
    }
}

/// Ejection time for the `times`-th ejection: `base x times`, capped at
/// `max(base, max)`.
pub fn ejection_time(base: Duration, max: Duration, times: u32) -> Duration {
    base.saturating_mul(times.max(1)).min(max.max(base))
}

/// Whether one more endpoint may be ejected: `total` usable endpoints (not removed),
/// `ejected` of them ejected now, `healthy` taking traffic now.
///
/// The max-ejection limit allows `(ejected + 1) <= max_percent x total`, and always one
/// ejection when none is active (unless `max_percent` is 0). The panic threshold refuses
/// any ejection that would leave fewer than `panic_percent` of `total` healthy.
pub fn may_eject(
    total: usize,
    ejected: usize,
    healthy: usize,
    max_percent: Percent,
    panic_percent: Percent,
) -> bool {
    let max = u64::from(max_percent.per_million());
    if total == 0 || healthy == 0 || max == 0 {
        return false;
    }
    let total = total as u64;
    let within_max = (ejected as u64 + 1) * MILLION <= max * total || ejected == 0;
    let healthy_after = healthy as u64 - 1;
    let above_panic = healthy_after * MILLION >= u64::from(panic_percent.per_million()) * total;
    within_max && above_panic
}

/// One endpoint's requests over an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntervalStats {
    /// Index of the endpoint.
    pub index: usize,
    /// Successful requests.
    pub success: u64,
    /// All requests.
    pub total: u64,
}

/// Endpoints whose success rate is below `mean - stdev x stdev_factor` among those
/// with at least `request_volume` requests, when there are `minimum_hosts` of them.
pub fn success_rate_outliers(stats: &[IntervalStats], cfg: &SuccessRateConfig) -> Vec<usize> {
    let eligible: Vec<(usize, f64)> = stats
        .iter()
        .filter(|s| s.total >= u64::from(cfg.request_volume) && s.total > 0)
        .map(|s| (s.index, s.success as f64 * 100.0 / s.total as f64))
        .collect();
    if eligible.is_empty() || eligible.len() < cfg.minimum_hosts.get() as usize {
        return Vec::new();
    }
    let n = eligible.len() as f64;
    let mean = eligible.iter().map(|e| e.1).sum::<f64>() / n;
    let var = eligible.iter().map(|e| (e.1 - mean).powi(2)).sum::<f64>() / n;
    let threshold = mean - var.sqrt() * cfg.stdev_factor;
    eligible
        .into_iter()
        .filter(|e| e.1 < threshold)
        .map(|e| e.0)
        .collect()
}

/// Endpoints failing at least `threshold_percent` of their requests, among those with
/// at least `request_volume` requests, when there are `minimum_hosts` of them.
pub fn failure_percentage_outliers(
    stats: &[IntervalStats],
    cfg: &FailurePercentageConfig,
) -> Vec<usize> {
    let eligible: Vec<&IntervalStats> = stats
        .iter()
        .filter(|s| s.total >= u64::from(cfg.request_volume) && s.total > 0)
        .collect();
    if eligible.len() < cfg.minimum_hosts.get() as usize {
        return Vec::new();
    }
    let threshold = u128::from(cfg.threshold_percent.per_million());
    eligible
        .into_iter()
        .filter(|s| {
            let failed = u128::from(s.total - s.success.min(s.total));
            failed * u128::from(MILLION) >= threshold * u128::from(s.total)
        })
        .map(|s| s.index)
        .collect()
}

/// One endpoint's latency over an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyStats {
    /// Index of the endpoint.
    pub index: usize,
    /// Attempts measured.
    pub count: u64,
    /// The configured percentile of their latencies.
    pub percentile: Duration,
}

/// Endpoints whose latency percentile is above the cutoff, `max(factor x median of the
/// percentiles, threshold)`, among those with at least `request_volume` attempts, when
/// there are `minimum_hosts` of them; with the cutoff (`None`: no evaluation).
pub fn latency_outliers(
    stats: &[LatencyStats],
    cfg: &LatencyConfig,
) -> (Vec<usize>, Option<Duration>) {
    let mut eligible: Vec<&LatencyStats> = stats
        .iter()
        .filter(|s| s.count >= u64::from(cfg.request_volume) && s.count > 0)
        .collect();
    if eligible.is_empty() || eligible.len() < cfg.minimum_hosts.get() as usize {
        return (Vec::new(), None);
    }
    eligible.sort_by_key(|s| s.percentile);
    let n = eligible.len();
    let median = if n % 2 == 1 {
        eligible[n / 2].percentile
    } else {
        (eligible[n / 2 - 1].percentile + eligible[n / 2].percentile) / 2
    };
    let scaled =
        Duration::try_from_secs_f64(median.as_secs_f64() * cfg.factor).unwrap_or(Duration::MAX);
    let cutoff = scaled.max(cfg.threshold);
    let out = eligible
        .into_iter()
        .filter(|s| s.percentile > cutoff)
        .map(|s| s.index)
        .collect();
    (out, Some(cutoff))
}

/// Whether an ejection with enforcement chance `percent` is enforced; `random` is
/// uniformly random.
pub fn enforced(percent: Percent, random: u32) -> bool {
    let chance = percent.per_million();
    u64::from(chance) >= MILLION || u64::from(random) % MILLION < u64::from(chance)
}
