//! Validation of the `adaptive_concurrency` config: refuses what cannot work, naming
//! the field, and clamps absurd gains with a warning.

use std::time::Duration;

use http::StatusCode;
use proxy_core::config::Percent;

use super::{config::AdaptiveConfig, controller::Gains};
use crate::ConfigError;

/// Largest accepted proportional gain; larger values are clamped with a warning.
pub const MAX_KP: f64 = 10.0;
/// Largest accepted integral gain (per second); larger values are clamped.
pub const MAX_KI: f64 = 100.0;
/// Largest accepted derivative gain (seconds); larger values are clamped.
pub const MAX_KD: f64 = 10.0;
/// Most intervals a latency window may span.
const MAX_WINDOW_INTERVALS: f64 = 1000.0;

fn err(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::invalid(field, reason)
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

fn above_zero(field: &str, p: Percent) -> Result<(), ConfigError> {
    if p.value() > 0.0 {
        Ok(())
    } else {
        Err(err(field, "must be above 0"))
    }
}

fn finite_in(field: &str, v: f64, lo: f64, hi: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v >= lo && v <= hi {
        Ok(())
    } else {
        Err(err(field, format!("{v} is not in [{lo}, {hi}]")))
    }
}

fn gain(field: &str, v: f64, max: f64, warnings: &mut Vec<String>) -> Result<f64, ConfigError> {
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
    /// Checks every field; refuses settings that cannot work.
    ///
    /// # Errors
    /// The first refused field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validated().map(|_| ())
    }

    pub(crate) fn validated(&self) -> Result<Validated, ConfigError> {
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
        if c.min_limit > c.max_limit {
            return Err(err(
                "min_limit",
                format!("{} is above max_limit {}", c.min_limit, c.max_limit),
            ));
        }
        if let Some(h) = &c.headroom {
            finite_in("headroom.factor", h.factor, 1.1, 1000.0)?;
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
            above_zero("cpu.target_percent", cpu.target_percent)?;
            if cpu.smoothing > Duration::from_secs(60) {
                return Err(err("cpu.smoothing", "is above 60s"));
            }
        }
        if let Some(l) = &c.latency {
            above_zero("latency.percentile", l.percentile)?;
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
            if l.probe.interval < Duration::from_secs(1)
                || l.probe.interval > Duration::from_secs(3600)
            {
                return Err(err(
                    "latency.probe.interval",
                    format!("{:?} is not in [1s, 1h]", l.probe.interval),
                ));
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
            above_zero("cost.high_cost_limit_percent", cost.high_cost_limit_percent)?;
            if !(1..=4096).contains(&cost.max_interfaces) {
                return Err(err(
                    "cost.max_interfaces",
                    format!("{} is not in [1, 4096]", cost.max_interfaces),
                ));
            }
            if cost.path_segments.get() > 64 {
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
    use proxy_core::config::Section;

    use super::*;

    fn parse(yaml: &str) -> Result<AdaptiveConfig, proxy_core::ConfigError> {
        let section: Section = proxy_core::config::from_yaml(yaml)?;
        let config: AdaptiveConfig = section.parse()?;
        config.validate()?;
        Ok(config)
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
            ("pid: {kp: 0, ki: 0}", "pid.ki"),
            ("pid: {ki: 0}", "pid.ki"),
            ("min_limit: 0", "min_limit"),
            ("{min_limit: 10, max_limit: 5}", "min_limit"),
            ("interval: 1ms", "interval"),
            ("cpu: {target_percent: 0}", "cpu.target_percent"),
            ("cpu: {target_percent: 150}", "cpu.target_percent"),
            ("cpu: {target: 0.7}", "cpu.target"),
            ("latency: {percentile: 0}", "latency.percentile"),
            ("latency: {percentile: 100.5}", "latency.percentile"),
            ("latency: {tolerance: 0.5}", "latency.tolerance"),
            ("latency: {target: 0s}", "latency.target"),
            ("latency: {min_samples: 0}", "latency.min_samples"),
            (
                "latency: {probe: {interval: 100ms}}",
                "latency.probe.interval",
            ),
            (
                "latency: {probe: {concurrency: 0}}",
                "latency.probe.concurrency",
            ),
            (
                "{interval: 10ms, latency: {window: 600s}}",
                "latency.window",
            ),
            ("{cpu: null, latency: null}", "latency"),
            (
                "cost: {high_cost_limit_percent: 0}",
                "cost.high_cost_limit_percent",
            ),
            ("cost: {high_cost_fraction: 0.5}", "cost.high_cost_fraction"),
            ("cost: {max_interfaces: 0}", "cost.max_interfaces"),
            ("cost: {path_segments: 0}", "cost.path_segments"),
            ("cost: {path_segments: 65}", "cost.path_segments"),
            ("reject: {status: 500}", "reject.status"),
            ("headroom: {factor: 0.5}", "headroom.factor"),
            ("headroom: {floor: 0}", "headroom.floor"),
            ("name: 'a b'", "name"),
            ("pid: {kp: fast}", "pid.kp"),
            ("pid: {bogus: 1}", "pid.bogus"),
            ("interval: soon", "interval"),
        ] {
            let e = parse(yaml).unwrap_err();
            assert_eq!(e.path, field, "{yaml}: {e}");
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
        let yaml = proxy_core::config::to_yaml(&c).unwrap();
        assert_eq!(parse(&yaml).unwrap(), c, "{yaml}");
    }
}
