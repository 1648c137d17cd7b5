//! The serde config of `adaptive_concurrency` and its validation.

use std::time::Duration;

use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::controller::{AntiWindup, Gains};

/// Largest accepted proportional gain; larger values are clamped with a warning.
pub const MAX_KP: f64 = 10.0;
/// Largest accepted integral gain (per second); larger values are clamped.
pub const MAX_KI: f64 = 100.0;
/// Largest accepted derivative gain (seconds); larger values are clamped.
pub const MAX_KD: f64 = 10.0;
/// Most intervals a latency window may span.
const MAX_WINDOW_INTERVALS: f64 = 1000.0;

/// Config of the adaptive concurrency limiter (`typed: adaptive_concurrency`).
///
/// ```yaml
/// name: ingress           # metric label (default: the listener's name)
/// interval: 100ms         # control loop period
/// min_limit: 2
/// max_limit: 1000
/// headroom: { factor: 2.0, floor: 16 }
/// throughput_floor: { memory: 10s }
/// cpu: { target: 0.7 }
/// latency: { percentile: 0.99, tolerance: 1.25, window: 1s, min_samples: 20 }
/// pid: { kp: 0.3, ki: 1.5, kd: 0.05, derivative_time: 200ms, anti_windup: back_calculation }
/// cost: { high_cost_factor: 2.0, high_cost_fraction: 0.7, max_interfaces: 64, path_segments: 2 }
/// reject: { status: 503, retry_after: 1s }
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdaptiveConfig {
    /// Name of this limiter in metrics (`limiter` label); when registered, defaults to
    /// the listener's name.
    pub name: Option<String>,
    /// Period of the control loop.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// The limit never goes below this (at least 1).
    pub min_limit: u32,
    /// The limit never goes above this.
    pub max_limit: u32,
    /// Keeps the limit near recent demand; `null` lets it rest at `max_limit`.
    pub headroom: Option<HeadroomConfig>,
    /// Never cut the limit below the concurrency that carried the best recent
    /// throughput at baseline latency (Little's law); `null` disables the floor.
    pub throughput_floor: Option<ThroughputFloorConfig>,
    /// Process CPU target; `null` disables the CPU signal.
    pub cpu: Option<CpuConfig>,
    /// Latency target; `null` disables the latency signal.
    pub latency: Option<LatencyConfig>,
    /// Controller gains.
    pub pid: PidConfig,
    /// Cost learning and shedding of high-cost interfaces; `null` disables it.
    pub cost: Option<CostConfig>,
    /// The answer to a rejected request.
    pub reject: RejectConfig,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        Self {
            name: None,
            interval: Duration::from_millis(100),
            min_limit: 2,
            max_limit: 1000,
            headroom: Some(HeadroomConfig::default()),
            throughput_floor: Some(ThroughputFloorConfig::default()),
            cpu: Some(CpuConfig::default()),
            latency: Some(LatencyConfig::default()),
            pid: PidConfig::default(),
            cost: Some(CostConfig::default()),
            reject: RejectConfig::default(),
        }
    }
}

/// The applied limit is at most `max(floor, factor * peak in-flight of the last
/// interval)`: the limit follows demand, so a sudden surge is admitted only as fast as
/// the controller can see its effect.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeadroomConfig {
    /// Multiple of recent peak demand (>= 1.1).
    pub factor: f64,
    /// The cap never goes below this.
    pub floor: u32,
}

impl Default for HeadroomConfig {
    fn default() -> Self {
        Self {
            factor: 2.0,
            floor: 16,
        }
    }
}

/// The Little's-law floor: `best recent completions per second x baseline mean
/// latency`. Cutting below it cannot lower queueing (there is none at that
/// concurrency), only goodput, so latency spikes that are not caused by concurrency
/// (a noisy neighbour) do not starve the service. Applies while latency, not CPU, is
/// the most loaded signal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThroughputFloorConfig {
    /// How long the best throughput is remembered (it decays exponentially).
    #[serde(with = "humantime_serde")]
    pub memory: Duration,
}

impl Default for ThroughputFloorConfig {
    fn default() -> Self {
        Self {
            memory: Duration::from_secs(10),
        }
    }
}

/// Process CPU target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CpuConfig {
    /// Target CPU use as a fraction of the available cores, in `(0, 1]`.
    pub target: f64,
    /// Smoothing time constant of the CPU signal.
    #[serde(with = "humantime_serde")]
    pub smoothing: Duration,
}

impl Default for CpuConfig {
    fn default() -> Self {
        Self {
            target: 0.7,
            smoothing: Duration::from_millis(500),
        }
    }
}

/// Latency target: fixed, or learned as `tolerance` times the unloaded baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyConfig {
    /// The percentile controlled, in `(0, 1]`.
    pub percentile: f64,
    /// A fixed target; when absent the target is learned.
    #[serde(with = "humantime_serde")]
    pub target: Option<Duration>,
    /// Learned target = baseline percentile in healthy intervals times this (>= 1.05).
    pub tolerance: f64,
    /// A learned target is never below this.
    #[serde(with = "humantime_serde")]
    pub min_target: Duration,
    /// How far back the percentile looks for `min_samples`.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Observations needed for a percentile (fewer: no latency signal).
    pub min_samples: u64,
}

impl Default for LatencyConfig {
    fn default() -> Self {
        Self {
            percentile: 0.99,
            target: None,
            tolerance: 1.25,
            min_target: Duration::from_millis(5),
            window: Duration::from_secs(1),
            min_samples: 20,
        }
    }
}

/// PID gains, acting on the logarithm of the limit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PidConfig {
    /// Proportional gain, `0..=10`.
    pub kp: f64,
    /// Integral gain per second, `(0, 100]`.
    pub ki: f64,
    /// Derivative gain in seconds, `0..=10`.
    pub kd: f64,
    /// Derivative filter time constant.
    #[serde(with = "humantime_serde")]
    pub derivative_time: Duration,
    /// Anti-windup method.
    pub anti_windup: AntiWindup,
}

impl Default for PidConfig {
    fn default() -> Self {
        let g = Gains::default();
        Self {
            kp: g.kp,
            ki: g.ki,
            kd: g.kd,
            derivative_time: Duration::from_secs_f64(g.derivative_time),
            anti_windup: g.anti_windup,
        }
    }
}

/// Learning per-interface cost and shedding high-cost interfaces first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CostConfig {
    /// An interface is high-cost when its baseline latency is at least this multiple of
    /// the traffic-weighted mean baseline (> 1).
    pub high_cost_factor: f64,
    /// High-cost requests are admitted only while in-flight is below this fraction of
    /// the limit, in `(0, 1]`.
    pub high_cost_fraction: f64,
    /// Interfaces tracked (others are never high-cost), `1..=4096`.
    pub max_interfaces: usize,
    /// Path segments naming an interface when the request carries no RPC method
    /// (`0`: the whole path).
    pub path_segments: usize,
    /// Observations an interface needs before it can be classified.
    pub min_samples: u64,
}

impl Default for CostConfig {
    fn default() -> Self {
        Self {
            high_cost_factor: 2.0,
            high_cost_fraction: 0.7,
            max_interfaces: 64,
            path_segments: 2,
            min_samples: 20,
        }
    }
}

/// The answer to a rejected request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RejectConfig {
    /// 503 or 429.
    pub status: u16,
    /// The `retry-after` hint (whole seconds, at least 1).
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
}

impl Default for RejectConfig {
    fn default() -> Self {
        Self {
            status: 503,
            retry_after: Duration::from_secs(1),
        }
    }
}

/// A refused `adaptive_concurrency` config: the field path and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
#[non_exhaustive]
pub struct AdaptiveConfigError {
    /// The field path inside the filter's config, e.g. `pid.kp`.
    pub field: String,
    /// Why it is refused.
    pub reason: String,
}

fn err(field: &str, reason: impl Into<String>) -> AdaptiveConfigError {
    AdaptiveConfigError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A config that passed validation, with absurd gains clamped.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Validated {
    pub(crate) config: AdaptiveConfig,
    pub(crate) gains: Gains,
    pub(crate) status: StatusCode,
    /// Warnings for values that were clamped, naming the field.
    pub(crate) warnings: Vec<String>,
}

fn finite_in(field: &str, v: f64, lo: f64, hi: f64) -> Result<(), AdaptiveConfigError> {
    if v.is_finite() && v >= lo && v <= hi {
        Ok(())
    } else {
        Err(err(field, format!("{v} is not in [{lo}, {hi}]")))
    }
}

fn gain(
    field: &str,
    v: f64,
    max: f64,
    warnings: &mut Vec<String>,
) -> Result<f64, AdaptiveConfigError> {
    if !v.is_finite() {
        return Err(err(field, format!("{v} is not a finite number")));
    }
    if v < 0.0 {
        return Err(err(
            field,
            format!("{v} is negative: a negative gain pushes the limit away from the target"),
        ));
    }
    if v > max {
        warnings.push(format!(
            "{field}: {v} is too large to converge, clamped to {max}"
        ));
        return Ok(max);
    }
    Ok(v)
}

impl AdaptiveConfig {
    /// Parses and validates a YAML section; errors name the field.
    ///
    /// # Errors
    /// When a field has the wrong type or is unknown, or validation fails.
    pub fn from_yaml(value: &serde_yaml::Value) -> Result<Self, AdaptiveConfigError> {
        let value = if value.is_null() {
            serde_yaml::Value::Mapping(serde_yaml::Mapping::new())
        } else {
            value.clone()
        };
        let config: Self = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { String::new() } else { path };
            err(&field, e.into_inner().to_string())
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every field; refuses settings that cannot work.
    ///
    /// # Errors
    /// The first refused field.
    pub fn validate(&self) -> Result<(), AdaptiveConfigError> {
        self.validated().map(|_| ())
    }

    pub(crate) fn validated(&self) -> Result<Validated, AdaptiveConfigError> {
        let mut warnings = Vec::new();
        let c = self;
        if let Some(name) = &c.name {
            if name.is_empty()
                || name.len() > 64
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
            {
                return Err(err(
                    "name",
                    format!("{name:?} must be 1-64 of [A-Za-z0-9_.-]"),
                ));
            }
        }
        if c.interval < Duration::from_millis(10) || c.interval > Duration::from_secs(10) {
            return Err(err(
                "interval",
                format!("{:?} is not in [10ms, 10s]", c.interval),
            ));
        }
        if c.min_limit == 0 {
            return Err(err(
                "min_limit",
                "must be at least 1: a zero limit admits nothing",
            ));
        }
        if c.min_limit > c.max_limit {
            return Err(err(
                "min_limit",
                format!("{} is above max_limit {}", c.min_limit, c.max_limit),
            ));
        }
        if let Some(h) = &c.headroom {
            finite_in("headroom.factor", h.factor, 1.1, 1000.0)?;
            if h.floor == 0 {
                return Err(err("headroom.floor", "must be at least 1"));
            }
        }
        if let Some(f) = &c.throughput_floor {
            if f.memory < c.interval || f.memory > Duration::from_secs(3600) {
                return Err(err(
                    "throughput_floor.memory",
                    format!("{:?} is not in [interval, 1h]", f.memory),
                ));
            }
        }
        if let Some(cpu) = &c.cpu {
            if !(cpu.target.is_finite() && cpu.target > 0.0 && cpu.target <= 1.0) {
                return Err(err(
                    "cpu.target",
                    format!("{} is not in (0, 1]", cpu.target),
                ));
            }
            if cpu.smoothing > Duration::from_secs(60) {
                return Err(err("cpu.smoothing", "is above 60s"));
            }
        }
        if let Some(l) = &c.latency {
            if !(l.percentile.is_finite() && l.percentile > 0.0 && l.percentile <= 1.0) {
                return Err(err(
                    "latency.percentile",
                    format!("{} is not in (0, 1]", l.percentile),
                ));
            }
            if l.target == Some(Duration::ZERO) {
                return Err(err("latency.target", "must be above zero"));
            }
            finite_in("latency.tolerance", l.tolerance, 1.05, 100.0)?;
            if l.window < c.interval {
                return Err(err(
                    "latency.window",
                    format!("{:?} is shorter than interval {:?}", l.window, c.interval),
                ));
            }
            if l.window > Duration::from_secs(600) {
                return Err(err("latency.window", "is above 600s"));
            }
            // One histogram of counts is kept per interval of the window.
            if l.window.as_secs_f64() / c.interval.as_secs_f64() > MAX_WINDOW_INTERVALS {
                return Err(err(
                    "latency.window",
                    format!(
                        "{:?} spans more than {MAX_WINDOW_INTERVALS} intervals of {:?}",
                        l.window, c.interval
                    ),
                ));
            }
            if l.min_samples == 0 {
                return Err(err("latency.min_samples", "must be at least 1"));
            }
        }
        if c.cpu.is_none() && c.latency.is_none() {
            return Err(err(
                "latency",
                "cpu and latency are both disabled: the controller would have no signal",
            ));
        }
        let p = &c.pid;
        let kp = gain("pid.kp", p.kp, MAX_KP, &mut warnings)?;
        let ki = gain("pid.ki", p.ki, MAX_KI, &mut warnings)?;
        let kd = gain("pid.kd", p.kd, MAX_KD, &mut warnings)?;
        if ki == 0.0 {
            return Err(err(
                "pid.ki",
                if kp == 0.0 {
                    "kp and ki are both 0: the controller would never move the limit"
                } else {
                    "must be above 0: without integral action the limit cannot settle on the target nor return to max_limit"
                },
            ));
        }
        if p.derivative_time > Duration::from_secs(60) {
            return Err(err("pid.derivative_time", "is above 60s"));
        }
        let dt = c.interval.as_secs_f64();
        let ki = if ki * dt > 2.0 {
            let clamped = 2.0 / dt;
            warnings.push(format!(
                "pid.ki: {ki} moves the limit by more than e^2 per interval and oscillates, clamped to {clamped}"
            ));
            clamped
        } else {
            ki
        };
        if let Some(cost) = &c.cost {
            finite_in("cost.high_cost_factor", cost.high_cost_factor, 1.01, 1000.0)?;
            if !(cost.high_cost_fraction.is_finite()
                && cost.high_cost_fraction > 0.0
                && cost.high_cost_fraction <= 1.0)
            {
                return Err(err(
                    "cost.high_cost_fraction",
                    format!("{} is not in (0, 1]", cost.high_cost_fraction),
                ));
            }
            if !(1..=4096).contains(&cost.max_interfaces) {
                return Err(err(
                    "cost.max_interfaces",
                    format!("{} is not in [1, 4096]", cost.max_interfaces),
                ));
            }
            if cost.path_segments > 64 {
                return Err(err("cost.path_segments", "is above 64"));
            }
        }
        let status = match c.reject.status {
            429 => StatusCode::TOO_MANY_REQUESTS,
            503 => StatusCode::SERVICE_UNAVAILABLE,
            s => return Err(err("reject.status", format!("{s} is not 429 or 503"))),
        };
        if c.reject.retry_after > Duration::from_secs(3600) {
            return Err(err("reject.retry_after", "is above 1h"));
        }
        Ok(Validated {
            config: c.clone(),
            gains: Gains {
                kp,
                ki,
                kd,
                derivative_time: p.derivative_time.as_secs_f64(),
                anti_windup: p.anti_windup,
            },
            status,
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<AdaptiveConfig, AdaptiveConfigError> {
        AdaptiveConfig::from_yaml(&serde_yaml::from_str(yaml).unwrap())
    }

    #[test]
    fn defaults_and_null() {
        assert_eq!(parse("{}").unwrap(), AdaptiveConfig::default());
        assert_eq!(parse("null").unwrap(), AdaptiveConfig::default());
        let c = parse("cpu: null\nlatency: {target: 30ms}\ncost: null").unwrap();
        assert_eq!(c.cpu, None);
        assert_eq!(c.latency.unwrap().target, Some(Duration::from_millis(30)));
    }

    #[test]
    fn refusals_name_the_field() {
        for (yaml, field) in [
            ("pid: {kp: -1}", "pid.kp"),
            ("pid: {ki: -0.5}", "pid.ki"),
            ("pid: {kd: .nan}", "pid.kd"),
            ("pid: {kp: 0, ki: 0}", "pid.ki"),
            ("pid: {ki: 0}", "pid.ki"),
            ("min_limit: 0", "min_limit"),
            ("{min_limit: 10, max_limit: 5}", "min_limit"),
            ("interval: 1ms", "interval"),
            ("cpu: {target: 1.5}", "cpu.target"),
            ("latency: {percentile: 0}", "latency.percentile"),
            ("latency: {tolerance: 0.5}", "latency.tolerance"),
            ("latency: {target: 0s}", "latency.target"),
            (
                "{interval: 10ms, latency: {window: 600s}}",
                "latency.window",
            ),
            ("{cpu: null, latency: null}", "latency"),
            ("cost: {high_cost_fraction: 0}", "cost.high_cost_fraction"),
            ("cost: {max_interfaces: 0}", "cost.max_interfaces"),
            ("reject: {status: 500}", "reject.status"),
            ("headroom: {factor: 0.5}", "headroom.factor"),
            ("name: 'a b'", "name"),
            ("pid: {kp: fast}", "pid.kp"),
            ("pid: {bogus: 1}", "pid.bogus"),
            ("interval: soon", "interval"),
        ] {
            let e = parse(yaml).unwrap_err();
            assert_eq!(e.field, field, "{yaml}: {e}");
            assert!(e.to_string().starts_with(field), "{e}");
        }
    }

    #[test]
    fn absurd_gains_are_clamped_with_a_warning() {
        let c = parse("pid: {kp: 1000, ki: 1e9, kd: 50}").unwrap();
        let v = c.validated().unwrap();
        assert_eq!(v.gains.kp, MAX_KP);
        assert_eq!(v.gains.kd, MAX_KD);
        assert!(v.gains.ki <= 2.0 / c.interval.as_secs_f64());
        for field in ["pid.kp", "pid.ki", "pid.kd"] {
            assert!(v.warnings.iter().any(|w| w.starts_with(field)), "{field}");
        }
    }

    #[test]
    fn round_trips() {
        let c = AdaptiveConfig::default();
        let yaml = serde_yaml::to_string(&c).unwrap();
        assert_eq!(parse(&yaml).unwrap(), c);
    }
}
