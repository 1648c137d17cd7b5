//! Active health checks (`typed: health_check` cluster extension): HTTP (path,
//! expected statuses) or TCP connect probes every interval (plus jitter), with a
//! timeout and healthy/unhealthy thresholds. An endpoint that fails
//! `unhealthy_threshold` probes in a row gets `HealthFlags::ACTIVE_HC_FAILED` and takes
//! no traffic until it passes `healthy_threshold` in a row. The probes also serve
//! outlier detection's readmission.

mod checker;
mod config;
mod metrics;
mod probe;
mod registry;
mod run;

pub use checker::HealthCheck;
pub use config::{HealthCheckConfig, Verdicts};
pub use metrics::{ClusterHealthCounters, HealthMetrics};
pub use probe::{
    http2_probe, http_probe, with_timeout, HttpProbeConfig, HttpVersion, ProbeConfig, ProbeError,
};
pub use registry::register;
pub use run::probe_endpoint;
