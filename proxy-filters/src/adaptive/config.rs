//! The serde config of `adaptive_concurrency` (validated in [`super::validate`]).

use std::{
    num::{NonZeroU32, NonZeroU64, NonZeroUsize},
    time::Duration,
};

use proxy_core::config::Percent;
use serde::{Deserialize, Serialize};

use super::controller::{AntiWindup, Gains};

/// Config of the adaptive concurrency limiter (`typed: adaptive_concurrency`). Every
/// field is optional; these are the defaults. The signal and safety sections
/// (`headroom`, `throughput_floor`, `cpu`, `latency`, `cost`) are on by default, as
/// the tuned behaviour of the limiter; `null` turns one off.
///
/// ```yaml
/// name: ingress           # metric label (default: the listener's name)
/// interval: 100ms         # control loop period
/// min_limit: 2
/// max_limit: 1000
/// headroom: { factor: 2.0, floor: 16 }
/// throughput_floor: { memory: 10s }
/// cpu: { target_percent: 70, smoothing: 500ms }
/// latency: { percentile: 99, tolerance: 1.25, min_target: 5ms, window: 1s, min_samples: 20,
///            probe: { concurrency: 3, interval: 30s } }
/// pid: { kp: 0.3, ki: 1.5, kd: 0.05, derivative_time: 200ms, anti_windup: back_calculation }
/// cost: { high_cost_factor: 2.0, high_cost_limit_percent: 70, max_interfaces: 64, path_segments: 2, min_samples: 20 }
/// reject: { status: 503, retry_after: 1s }
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdaptiveConfig {
    /// Name of this limiter in metrics (`filter` label); when registered, defaults to
    /// the listener's name.
    pub name: Option<String>,
    /// Period of the control loop.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// The limit never goes below this.
    pub min_limit: NonZeroU32,
    /// The limit never goes above this.
    pub max_limit: NonZeroU32,
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
            min_limit: nz32(2),
            max_limit: nz32(1000),
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
    pub floor: NonZeroU32,
}

impl Default for HeadroomConfig {
    fn default() -> Self {
        Self {
            factor: 2.0,
            floor: nz32(16),
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
    /// Target CPU use as a share of the available cores, above 0 and at most 100.
    pub target_percent: Percent,
    /// Smoothing time constant of the CPU signal.
    #[serde(with = "humantime_serde")]
    pub smoothing: Duration,
}

impl Default for CpuConfig {
    fn default() -> Self {
        Self {
            target_percent: percent(70.0),
            smoothing: Duration::from_millis(500),
        }
    }
}

/// Latency target: fixed, or learned as `tolerance` times the unloaded baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyConfig {
    /// The percentile controlled (`99` for p99), above 0 and at most 100.
    pub percentile: Percent,
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
    pub min_samples: NonZeroU64,
    /// How a learned baseline is measured: at low concurrency only (unused with a fixed
    /// `target`).
    pub probe: ProbeConfig,
}

/// Measuring the unloaded latency (the minimum-latency window of Envoy's gradient
/// controller): the limit shrinks to `concurrency` until `latency.min_samples` requests
/// admitted at that concurrency have completed; their percentile and mean become the
/// baseline, and the limit goes back to where it was. A new limiter measures first
/// (its limit starts at `concurrency`, then goes to the headroom floor and is probed
/// down from there), then every `interval`. While the latency of a measurement keeps
/// falling (a backlog draining), what it gathered before is dropped. A healthy
/// interval may lower the baseline; only a measurement raises it, so latency seen under
/// load is never learned as unloaded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeConfig {
    /// The concurrency the baseline is measured at (clamped into `[min_limit, max_limit]`).
    pub concurrency: NonZeroU32,
    /// Time between measurements, `1s..=1h`.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            concurrency: nz32(3),
            interval: Duration::from_secs(30),
        }
    }
}

impl Default for LatencyConfig {
    fn default() -> Self {
        Self {
            percentile: percent(99.0),
            target: None,
            tolerance: 1.25,
            min_target: Duration::from_millis(5),
            window: Duration::from_secs(1),
            min_samples: NonZeroU64::new(20).unwrap_or(NonZeroU64::MIN),
            probe: ProbeConfig::default(),
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
    /// High-cost requests are admitted only while in-flight is below this share of
    /// the limit, above 0 and at most 100.
    pub high_cost_limit_percent: Percent,
    /// Interfaces tracked (others are never high-cost), `1..=4096`.
    pub max_interfaces: usize,
    /// Leading path segments naming an interface when the request carries no RPC
    /// method, `1..=64`.
    pub path_segments: NonZeroUsize,
    /// Observations an interface needs before it can be classified.
    pub min_samples: u64,
}

impl Default for CostConfig {
    fn default() -> Self {
        Self {
            high_cost_factor: 2.0,
            high_cost_limit_percent: percent(70.0),
            max_interfaces: 64,
            path_segments: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
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

fn nz32(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

fn percent(p: f64) -> Percent {
    Percent::try_from(p).unwrap_or(Percent::HUNDRED)
}
