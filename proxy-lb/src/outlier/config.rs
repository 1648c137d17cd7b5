//! The serde config of the `outlier_detection` cluster extension, and its validation.

use std::{num::NonZeroU32, time::Duration};

use proxy_core::config::Percent;
use serde::{Deserialize, Serialize};

use crate::{healing::WebhookConfig, health::ProbeConfig, ConfigError};

/// `clusters[].extensions[].config` of `typed: outlier_detection`, with Envoy's
/// semantics, plus latency ejection. Each ejection rule (`consecutive_5xx`,
/// `consecutive_gateway_failure`, `success_rate`, `failure_percentage`, `latency`) is
/// off when absent; at least one must be on.
///
/// ```yaml
/// interval: 10s
/// base_ejection_time: 30s
/// max_ejection_time: 300s
/// max_ejection_percent: 10
/// panic_threshold_percent: 50
/// consecutive_5xx: 5
/// enforcing_consecutive_5xx_percent: 100
/// consecutive_gateway_failure: 3
/// enforcing_consecutive_gateway_failure_percent: 100
/// success_rate: {minimum_hosts: 5, request_volume: 100, stdev_factor: 1.9, enforcing_percent: 100}
/// failure_percentage: {threshold_percent: 85, minimum_hosts: 5, request_volume: 50, enforcing_percent: 100}
/// latency: {percentile: 90, factor: 3, threshold: 100ms, minimum_hosts: 3, request_volume: 20, enforcing_percent: 100}
/// readmission: {probe: {http: {path: /healthz, expected_statuses: [200]}}, timeout: 1s}
/// healing: {webhook: {url: "http://127.0.0.1:9000/ejections", timeout: 2s}}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierConfig {
    /// How often success rate and failure percentage are evaluated and ejected
    /// endpoints whose time is up are probed.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Ejection time = this x times ejected, capped at `max_ejection_time`.
    #[serde(with = "humantime_serde")]
    pub base_ejection_time: Duration,
    /// The longest ejection.
    #[serde(with = "humantime_serde")]
    pub max_ejection_time: Duration,
    /// At most this share of the endpoints is ejected at once; one endpoint may
    /// always be ejected when none is (as Envoy does), unless this is 0.
    pub max_ejection_percent: Percent,
    /// No ejection that would leave fewer than this share of the endpoints healthy.
    pub panic_threshold_percent: Percent,
    /// Consecutive 5xx (and local failures) that eject; off when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_5xx: Option<NonZeroU32>,
    /// Chance that a consecutive-5xx ejection is enforced.
    pub enforcing_consecutive_5xx_percent: Percent,
    /// Consecutive gateway failures (502, 503, 504, connect failure, timeout, reset)
    /// that eject; off when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_gateway_failure: Option<NonZeroU32>,
    /// Chance that a gateway-failure ejection is enforced.
    pub enforcing_consecutive_gateway_failure_percent: Percent,
    /// Success-rate ejection; off when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_rate: Option<SuccessRateConfig>,
    /// Failure-percentage ejection; off when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_percentage: Option<FailurePercentageConfig>,
    /// Latency ejection; off when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyConfig>,
    /// How an ejected endpoint proves it may come back.
    pub readmission: ReadmissionConfig,
    /// Where ejections are reported; nowhere when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healing: Option<HealingConfig>,
}

/// Envoy's defaults, with every ejection rule off.
impl Default for OutlierConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: percent(10.0),
            panic_threshold_percent: percent(50.0),
            consecutive_5xx: None,
            enforcing_consecutive_5xx_percent: Percent::HUNDRED,
            consecutive_gateway_failure: None,
            enforcing_consecutive_gateway_failure_percent: Percent::HUNDRED,
            success_rate: None,
            failure_percentage: None,
            latency: None,
            readmission: ReadmissionConfig::default(),
            healing: None,
        }
    }
}

/// A constant percentage (0 to 100).
fn percent(v: f64) -> Percent {
    Percent::try_from(v).unwrap_or(Percent::HUNDRED)
}

/// Success-rate ejection: endpoints whose success rate over the interval is below
/// `mean - stdev x stdev_factor` of the endpoints with enough requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SuccessRateConfig {
    /// Fewer endpoints with enough requests than this: no evaluation.
    pub minimum_hosts: NonZeroU32,
    /// Requests an endpoint needs in the interval to be evaluated.
    pub request_volume: u32,
    /// How many standard deviations below the mean ejects (Envoy's 1900 is 1.9).
    pub stdev_factor: f64,
    /// Chance that an ejection is enforced.
    pub enforcing_percent: Percent,
}

impl Default for SuccessRateConfig {
    fn default() -> Self {
        Self {
            minimum_hosts: NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN),
            request_volume: 100,
            stdev_factor: 1.9,
            enforcing_percent: Percent::HUNDRED,
        }
    }
}

/// Failure-percentage ejection: endpoints failing at least `threshold_percent` of
/// their requests over the interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailurePercentageConfig {
    /// The share of failed requests that ejects.
    pub threshold_percent: Percent,
    /// Fewer endpoints with enough requests than this: no evaluation.
    pub minimum_hosts: NonZeroU32,
    /// Requests an endpoint needs in the interval to be evaluated.
    pub request_volume: u32,
    /// Chance that an ejection is enforced.
    pub enforcing_percent: Percent,
}

impl Default for FailurePercentageConfig {
    fn default() -> Self {
        Self {
            threshold_percent: percent(85.0),
            minimum_hosts: NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN),
            request_volume: 50,
            enforcing_percent: Percent::HUNDRED,
        }
    }
}

/// Latency ejection: an endpoint whose latency `percentile` over the interval is above
/// `factor` times the median of the endpoints' percentiles and above `threshold` is
/// ejected, among endpoints with at least `request_volume` attempts, when there are
/// `minimum_hosts` of them. An endpoint ejected for latency is readmitted only when its
/// readmission probe also answers within the cutoff it was ejected at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyConfig {
    /// Which latency percentile of each endpoint is compared (90: p90).
    pub percentile: Percent,
    /// How many times the cluster's median percentile ejects (1 or more).
    pub factor: f64,
    /// The absolute floor: an endpoint at or below this latency is never ejected.
    #[serde(with = "humantime_serde")]
    pub threshold: Duration,
    /// Fewer endpoints with enough attempts than this: no evaluation.
    pub minimum_hosts: NonZeroU32,
    /// Attempts an endpoint needs in the interval to be evaluated.
    pub request_volume: u32,
    /// Chance that an ejection is enforced.
    pub enforcing_percent: Percent,
}

impl Default for LatencyConfig {
    fn default() -> Self {
        Self {
            percentile: percent(90.0),
            factor: 3.0,
            threshold: Duration::from_millis(100),
            minimum_hosts: NonZeroU32::new(3).unwrap_or(NonZeroU32::MIN),
            request_volume: 20,
            enforcing_percent: Percent::HUNDRED,
        }
    }
}

/// The active probe an ejected endpoint must pass, once its ejection time is up,
/// before it takes traffic again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadmissionConfig {
    /// The probe (default: TCP connect).
    pub probe: ProbeConfig,
    /// The probe's time limit.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for ReadmissionConfig {
    fn default() -> Self {
        Self {
            probe: ProbeConfig::default(),
            timeout: Duration::from_secs(1),
        }
    }
}

/// Where ejections are reported (self-healing): a one-key map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HealingConfig {
    /// An HTTP webhook that receives each ejection as a JSON POST:
    /// `{webhook: {url: "http://127.0.0.1:9000/ejections"}}`.
    Webhook(WebhookConfig),
}

/// The longest interval or timeout accepted.
const MAX_PERIOD: Duration = Duration::from_secs(24 * 3600);
/// The shortest interval accepted.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

impl OutlierConfig {
    /// Checks the values serde cannot.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first bad field: no ejection rule on, an
    /// interval below 1ms, a zero base or timeout, a period above 24h, a max ejection
    /// time below the base, a negative or non-finite `stdev_factor`, a bad probe or
    /// webhook.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, reason: String| Err(ConfigError::invalid(field, reason));
        if self.consecutive_5xx.is_none()
            && self.consecutive_gateway_failure.is_none()
            && self.success_rate.is_none()
            && self.failure_percentage.is_none()
            && self.latency.is_none()
        {
            return bad(
                "",
                "no ejection rule is on: set consecutive_5xx, consecutive_gateway_failure, \
                 success_rate, failure_percentage or latency"
                    .into(),
            );
        }
        for (field, d) in [
            ("interval", self.interval),
            ("base_ejection_time", self.base_ejection_time),
            ("readmission.timeout", self.readmission.timeout),
        ] {
            if d.is_zero() {
                return bad(field, "must be above zero".into());
            }
        }
        for (field, d) in [
            ("interval", self.interval),
            ("readmission.timeout", self.readmission.timeout),
        ] {
            if d > MAX_PERIOD {
                return bad(field, format!("{d:?} is above 24h"));
            }
        }
        // A sub-millisecond interval would spin the evaluation task.
        if self.interval < MIN_INTERVAL {
            return bad(
                "interval",
                format!("{:?} is below {MIN_INTERVAL:?}", self.interval),
            );
        }
        if self.max_ejection_time < self.base_ejection_time {
            return bad(
                "max_ejection_time",
                format!(
                    "{:?} is below base_ejection_time {:?}",
                    self.max_ejection_time, self.base_ejection_time
                ),
            );
        }
        if let Some(s) = &self.success_rate {
            if !(s.stdev_factor.is_finite() && s.stdev_factor >= 0.0) {
                return bad(
                    "success_rate.stdev_factor",
                    format!(
                        "{} is not a number of standard deviations (0 or more)",
                        s.stdev_factor
                    ),
                );
            }
        }
        if let Some(l) = &self.latency {
            if !(l.factor.is_finite() && l.factor >= 1.0) {
                return bad(
                    "latency.factor",
                    format!("{} is not a factor of 1 or more", l.factor),
                );
            }
            if l.threshold > MAX_PERIOD {
                return bad(
                    "latency.threshold",
                    format!("{:?} is above 24h", l.threshold),
                );
            }
        }
        self.readmission
            .probe
            .validate()
            .map_err(|e| e.within("readmission.probe"))?;
        if let Some(HealingConfig::Webhook(w)) = &self.healing {
            w.validate().map_err(|e| e.within("healing.webhook"))?;
        }
        Ok(())
    }
}
