//! The serde config of the `health_check` cluster extension.

use std::{num::NonZeroU32, time::Duration};

use serde::{Deserialize, Serialize};

use super::probe::ProbeConfig;
use crate::ConfigError;

/// `clusters[].extensions[].config` of `typed: health_check`.
///
/// ```yaml
/// interval: 5s
/// jitter: 500ms
/// timeout: 1s
/// unhealthy_threshold: 3
/// healthy_threshold: 2
/// probe: {http: {path: /healthz, expected_statuses: [200]}}   # or: probe: tcp
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    /// Time between rounds of probes.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// A random extra delay up to this, added to each interval.
    #[serde(with = "humantime_serde")]
    pub jitter: Duration,
    /// One probe's time limit.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive failures that mark an endpoint unhealthy.
    pub unhealthy_threshold: NonZeroU32,
    /// Consecutive successes that mark it healthy again.
    pub healthy_threshold: NonZeroU32,
    /// The probe: a TCP connect when absent.
    pub probe: ProbeConfig,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            jitter: Duration::ZERO,
            timeout: Duration::from_secs(1),
            unhealthy_threshold: NonZeroU32::new(3).unwrap_or(NonZeroU32::MIN),
            healthy_threshold: NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN),
            probe: ProbeConfig::default(),
        }
    }
}

impl HealthCheckConfig {
    /// Checks the values serde cannot.
    ///
    /// # Errors
    /// An interval below 1ms, a zero timeout, a period above 24h, or a bad probe,
    /// naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, reason: &str| Err(ConfigError::invalid(field, reason));
        if self.interval.is_zero() {
            return bad("interval", "must be above zero");
        }
        if self.timeout.is_zero() {
            return bad("timeout", "must be above zero");
        }
        // A sub-millisecond interval would probe every endpoint back to back.
        if self.interval < Duration::from_millis(1) {
            return bad("interval", "must be at least 1ms");
        }
        let day = Duration::from_secs(24 * 3600);
        for (field, d) in [
            ("interval", self.interval),
            ("jitter", self.jitter),
            ("timeout", self.timeout),
        ] {
            if d > day {
                return bad(field, "must be at most 24h");
            }
        }
        self.probe.validate().map_err(|e| e.within("probe"))
    }
}

/// Consecutive-result bookkeeping of one endpoint: returns the new verdict when a
/// threshold flips it.
#[derive(Debug, Default)]
pub struct Verdicts {
    successes: std::sync::atomic::AtomicU32,
    failures: std::sync::atomic::AtomicU32,
}

impl Verdicts {
    /// Records a probe result; `Some(healthy)` when the endpoint's state must change
    /// (`currently_healthy` is its state now).
    pub fn record(
        &self,
        ok: bool,
        currently_healthy: bool,
        cfg: &HealthCheckConfig,
    ) -> Option<bool> {
        use std::sync::atomic::Ordering::Relaxed;
        if ok {
            self.failures.store(0, Relaxed);
            let n = self.successes.fetch_add(1, Relaxed).saturating_add(1);
            (!currently_healthy && n >= cfg.healthy_threshold.get()).then_some(true)
        } else {
            self.successes.store(0, Relaxed);
            let n = self.failures.fetch_add(1, Relaxed).saturating_add(1);
            (currently_healthy && n >= cfg.unhealthy_threshold.get()).then_some(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str) -> Result<(), String> {
        let cfg: HealthCheckConfig =
            proxy_core::config::from_yaml(yaml).map_err(|e| e.to_string())?;
        cfg.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn intervals_are_bounded_both_ways() {
        assert_eq!(
            check("interval: 0s").err().as_deref(),
            Some("interval: must be above zero")
        );
        // Sub-millisecond: every endpoint probed back to back.
        assert_eq!(
            check("interval: 10us").err().as_deref(),
            Some("interval: must be at least 1ms")
        );
        assert_eq!(
            check("interval: 25h").err().as_deref(),
            Some("interval: must be at most 24h")
        );
        assert_eq!(
            check("jitter: 1000days").err().as_deref(),
            Some("jitter: must be at most 24h")
        );
        assert!(check("interval: 1ms").is_ok());
        assert!(check("interval: 24h").is_ok());
        assert_eq!(
            check("unhealthy_threshold: 0").err().as_deref(),
            Some("unhealthy_threshold: invalid value: integer `0`, expected a nonzero u32")
        );
    }
}
