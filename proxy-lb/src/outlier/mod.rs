//! Outlier detection (`typed: outlier_detection` cluster extension) with Envoy's
//! semantics: consecutive 5xx, consecutive gateway failures, success-rate and
//! failure-percentage ejection over an interval; ejection time = base x times ejected
//! (capped); a max ejection percent and a panic threshold. Each ejection is reported
//! to a [`crate::healing::HealingSink`]; an ejected endpoint comes back only after an
//! active probe passes once its ejection time is up.

mod background;
mod config;
mod counters;
mod detector;
mod math;
mod metrics;
mod registry;

#[cfg(test)]
mod tests;

pub use config::{
    FailurePercentageConfig, HealingConfig, LatencyConfig, OutlierConfig, ReadmissionConfig,
    SuccessRateConfig,
};
pub use counters::{Attempt, EndpointCounters, LatencyHistogram, Thresholds};
pub use detector::OutlierDetection;
pub use math::{
    ejection_time, enforced, failure_percentage_outliers, latency_outliers, may_eject,
    success_rate_outliers, EjectionReason, IntervalStats, LatencyStats,
};
pub use metrics::{ClusterOutlierCounters, OutlierMetrics};
pub use registry::{register, register_with_sink};
