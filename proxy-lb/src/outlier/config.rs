//! The serde config of the `outlier_detection` cluster extension, and its validation.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{healing::WebhookConfig, health::ProbeConfig};

/// `clusters[].extensions[].config` of `typed: outlier_detection`, with Envoy's
/// semantics and defaults.
///
/// ```yaml
/// interval: 10s
/// base_ejection_time: 30s
/// max_ejection_time: 300s
/// max_ejection_percent: 10
/// panic_threshold: 50
/// consecutive_5xx: 5
/// consecutive_gateway_failure: 0      # 0: off
/// success_rate: {minimum_hosts: 5, request_volume: 100, stdev_factor: 1900}
/// failure_percentage: {threshold: 85, minimum_hosts: 5, request_volume: 50}
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
    /// At most this share (percent) of the endpoints is ejected at once; one endpoint
    /// may always be ejected when none is (as Envoy does).
    pub max_ejection_percent: u32,
    /// No ejection that would leave fewer than this share (percent) of the endpoints
    /// healthy.
    pub panic_threshold: u32,
    /// Consecutive 5xx (and local failures) that eject; 0 turns it off.
    pub consecutive_5xx: u32,
    /// Chance (percent) that a consecutive-5xx ejection is enforced.
    pub enforcing_consecutive_5xx: u32,
    /// Consecutive gateway failures (502, 503, 504, connect failure, timeout, reset)
    /// that eject; 0 turns it off.
    pub consecutive_gateway_failure: u32,
    /// Chance (percent) that a gateway-failure ejection is enforced.
    pub enforcing_consecutive_gateway_failure: u32,
    /// Success-rate ejection; off when absent.
    pub success_rate: Option<SuccessRateConfig>,
    /// Failure-percentage ejection; off when absent.
    pub failure_percentage: Option<FailurePercentageConfig>,
    /// How an ejected endpoint proves it may come back.
    pub readmission: ReadmissionConfig,
    /// Where ejections are reported.
    pub healing: Option<HealingConfig>,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
            panic_threshold: 50,
            consecutive_5xx: 5,
            enforcing_consecutive_5xx: 100,
            consecutive_gateway_failure: 0,
            enforcing_consecutive_gateway_failure: 100,
            success_rate: None,
            failure_percentage: None,
            readmission: ReadmissionConfig::default(),
            healing: None,
        }
    }
}

/// Success-rate ejection: endpoints whose success rate over the interval is below
/// `mean - stdev x stdev_factor / 1000` of the endpoints with enough requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SuccessRateConfig {
    /// Fewer endpoints with enough requests than this: no evaluation.
    pub minimum_hosts: u32,
    /// Requests an endpoint needs in the interval to be evaluated.
    pub request_volume: u32,
    /// The stdev factor, in thousandths.
    pub stdev_factor: u32,
    /// Chance (percent) that an ejection is enforced.
    pub enforcing: u32,
}

impl Default for SuccessRateConfig {
    fn default() -> Self {
        Self {
            minimum_hosts: 5,
            request_volume: 100,
            stdev_factor: 1900,
            enforcing: 100,
        }
    }
}

/// Failure-percentage ejection: endpoints failing at least `threshold` percent of
/// their requests over the interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailurePercentageConfig {
    /// The failure percentage that ejects.
    pub threshold: u32,
    /// Fewer endpoints with enough requests than this: no evaluation.
    pub minimum_hosts: u32,
    /// Requests an endpoint needs in the interval to be evaluated.
    pub request_volume: u32,
    /// Chance (percent) that an ejection is enforced.
    pub enforcing: u32,
}

impl Default for FailurePercentageConfig {
    fn default() -> Self {
        Self {
            threshold: 85,
            minimum_hosts: 5,
            request_volume: 50,
            enforcing: 100,
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

/// Where ejections are reported (self-healing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealingConfig {
    /// An HTTP webhook that receives each ejection as a JSON POST.
    pub webhook: WebhookConfig,
}

/// The longest interval or timeout accepted.
const MAX_PERIOD: Duration = Duration::from_secs(24 * 3600);
/// The shortest interval accepted.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// An error in the `outlier_detection` config, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutlierConfigError {
    /// A field has a bad value.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field path.
        field: String,
        /// Why the value is refused.
        reason: String,
    },
}

impl OutlierConfig {
    /// Checks the values serde cannot.
    ///
    /// # Errors
    /// An [`OutlierConfigError`] naming the first bad field: a percentage above 100, a
    /// zero interval, base or timeout, a max ejection time below the base, a bad probe
    /// or webhook.
    pub fn validate(&self) -> Result<(), OutlierConfigError> {
        let bad = |field: &str, reason: String| {
            Err(OutlierConfigError::Invalid {
                field: field.to_owned(),
                reason,
            })
        };
        let mut percents = vec![
            ("max_ejection_percent", self.max_ejection_percent),
            ("panic_threshold", self.panic_threshold),
            ("enforcing_consecutive_5xx", self.enforcing_consecutive_5xx),
            (
                "enforcing_consecutive_gateway_failure",
                self.enforcing_consecutive_gateway_failure,
            ),
        ];
        if let Some(s) = &self.success_rate {
            percents.push(("success_rate.enforcing", s.enforcing));
        }
        if let Some(f) = &self.failure_percentage {
            percents.push(("failure_percentage.threshold", f.threshold));
            percents.push(("failure_percentage.enforcing", f.enforcing));
        }
        for (field, v) in percents {
            if v > 100 {
                return bad(field, format!("{v} is above 100 (a percentage)"));
            }
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
            if s.minimum_hosts == 0 {
                return bad("success_rate.minimum_hosts", "must be above zero".into());
            }
        }
        if let Some(f) = &self.failure_percentage {
            if f.minimum_hosts == 0 {
                return bad(
                    "failure_percentage.minimum_hosts",
                    "must be above zero".into(),
                );
            }
        }
        self.readmission
            .probe
            .validate()
            .map_err(|reason| OutlierConfigError::Invalid {
                field: format!("readmission.probe.{}", reason.0),
                reason: reason.1,
            })?;
        if let Some(h) = &self.healing {
            h.webhook
                .validate()
                .map_err(|reason| OutlierConfigError::Invalid {
                    field: format!("healing.webhook.{}", reason.0),
                    reason: reason.1,
                })?;
        }
        Ok(())
    }
}
