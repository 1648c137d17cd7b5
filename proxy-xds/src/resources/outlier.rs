//! CDS: a cluster's `outlier_detection` onto proxy-lb's `outlier_detection` cluster
//! extension, with Envoy's defaults for every absent field.

use std::time::Duration;

use envoy_types::pb::{
    envoy::config::cluster::v3::OutlierDetection,
    google::protobuf::{Duration as PbDuration, UInt32Value},
};
use proxy_core::config::TypedConfig;
use serde_json::{json, Map, Value};

use super::{duration, refuse_leftover};
use crate::Refusal;

/// The registered name of proxy-lb's outlier detection extension.
pub(super) const OUTLIER_EXTENSION: &str = "outlier_detection";

/// `OutlierDetection` (envoy.config.cluster.v3) fields by number.
const FIELDS: super::fields::Fields = &[
    (1, "consecutive_5xx"),
    (2, "interval"),
    (3, "base_ejection_time"),
    (4, "max_ejection_percent"),
    (5, "enforcing_consecutive_5xx"),
    (6, "enforcing_success_rate"),
    (7, "success_rate_minimum_hosts"),
    (8, "success_rate_request_volume"),
    (9, "success_rate_stdev_factor"),
    (10, "consecutive_gateway_failure"),
    (11, "enforcing_consecutive_gateway_failure"),
    (12, "split_external_local_origin_errors"),
    (13, "consecutive_local_origin_failure"),
    (14, "enforcing_consecutive_local_origin_failure"),
    (15, "enforcing_local_origin_success_rate"),
    (16, "failure_percentage_threshold"),
    (17, "enforcing_failure_percentage"),
    (18, "enforcing_failure_percentage_local_origin"),
    (19, "failure_percentage_minimum_hosts"),
    (20, "failure_percentage_request_volume"),
    (21, "max_ejection_time"),
    (22, "max_ejection_time_jitter"),
    (23, "successful_active_health_check_uneject_host"),
    (24, "monitors"),
    (25, "always_eject_one_host"),
    (26, "detect_degraded_hosts"),
];

/// Translates `outlier_detection`; `panic_threshold_percent` is the cluster's
/// `common_lb_config.healthy_panic_threshold` (Envoy's 50 when absent). `None` when
/// no ejection rule is enforced (every `enforcing_*` at 0, or the counts at 0): the
/// detection would never eject, so nothing is attached.
///
/// Envoy's default mode is kept: local-origin failures (connect failures, resets,
/// timeouts) count as 5xx and gateway failures, so the `*_local_origin_*` fields,
/// which only act with `split_external_local_origin_errors`, change nothing;
/// splitting itself is refused. An ejected endpoint comes back after its ejection
/// time once a TCP connect to it succeeds (Envoy readmits without a probe).
pub(super) fn outlier_detection(
    o: &OutlierDetection,
    panic_threshold_percent: f64,
) -> Result<Option<TypedConfig>, Refusal> {
    let mut rest = o.clone();
    // Mapped below.
    for v in [
        &mut rest.consecutive_5xx,
        &mut rest.max_ejection_percent,
        &mut rest.enforcing_consecutive_5xx,
        &mut rest.enforcing_success_rate,
        &mut rest.success_rate_minimum_hosts,
        &mut rest.success_rate_request_volume,
        &mut rest.success_rate_stdev_factor,
        &mut rest.consecutive_gateway_failure,
        &mut rest.enforcing_consecutive_gateway_failure,
        &mut rest.failure_percentage_threshold,
        &mut rest.enforcing_failure_percentage,
        &mut rest.failure_percentage_minimum_hosts,
        &mut rest.failure_percentage_request_volume,
        // Only read with split_external_local_origin_errors, refused below.
        &mut rest.consecutive_local_origin_failure,
        &mut rest.enforcing_consecutive_local_origin_failure,
        &mut rest.enforcing_local_origin_success_rate,
        &mut rest.enforcing_failure_percentage_local_origin,
    ] {
        *v = None;
    }
    rest.interval = None;
    rest.base_ejection_time = None;
    rest.max_ejection_time = None;
    if rest.max_ejection_time_jitter.as_ref().is_some_and(is_zero) {
        rest.max_ejection_time_jitter = None;
    }
    if rest
        .successful_active_health_check_uneject_host
        .as_ref()
        .is_some_and(|b| !b.value)
    {
        rest.successful_active_health_check_uneject_host = None;
    }
    if rest
        .detect_degraded_hosts
        .as_ref()
        .is_some_and(|b| !b.value)
    {
        rest.detect_degraded_hosts = None;
    }
    let max_ejection_percent = percent(&o.max_ejection_percent, 10, "max_ejection_percent")?;
    // Here one endpoint may always be ejected when none is, unless the maximum is 0:
    // Envoy's `always_eject_one_host` adds nothing but that case.
    if rest
        .always_eject_one_host
        .as_ref()
        .is_some_and(|b| !b.value)
        || max_ejection_percent > 0
    {
        rest.always_eject_one_host = None;
    }
    if rest.split_external_local_origin_errors {
        return Err(Refusal::new(
            "",
            "split_external_local_origin_errors",
            "not supported: local-origin failures count as 5xx here (Envoy's default)",
        ));
    }
    refuse_leftover(&rest, FIELDS)?;

    let mut cfg = Map::new();
    let interval = period(&o.interval, Duration::from_secs(10), "interval")?;
    let base = period(
        &o.base_ejection_time,
        Duration::from_secs(30),
        "base_ejection_time",
    )?;
    // Envoy: 300 s or the base ejection time, whichever is larger, when absent.
    let max_time = period(
        &o.max_ejection_time,
        base.max(Duration::from_secs(300)),
        "max_ejection_time",
    )?;
    bounded(interval, "interval")?;
    if max_time < base {
        return Err(Refusal::new(
            "",
            "max_ejection_time",
            "must not be below base_ejection_time",
        ));
    }
    cfg.insert("interval".into(), humantime(interval));
    cfg.insert("base_ejection_time".into(), humantime(base));
    cfg.insert("max_ejection_time".into(), humantime(max_time));
    cfg.insert("max_ejection_percent".into(), max_ejection_percent.into());
    cfg.insert(
        "panic_threshold_percent".into(),
        panic_threshold_percent.into(),
    );
    let mut rules = 0;

    let c5xx = count(&o.consecutive_5xx, 5);
    let enforce_5xx = percent(
        &o.enforcing_consecutive_5xx,
        100,
        "enforcing_consecutive_5xx",
    )?;
    if c5xx > 0 && enforce_5xx > 0 {
        cfg.insert("consecutive_5xx".into(), c5xx.into());
        cfg.insert(
            "enforcing_consecutive_5xx_percent".into(),
            enforce_5xx.into(),
        );
        rules += 1;
    }
    let gateway = count(&o.consecutive_gateway_failure, 5);
    let enforce_gateway = percent(
        &o.enforcing_consecutive_gateway_failure,
        0,
        "enforcing_consecutive_gateway_failure",
    )?;
    if gateway > 0 && enforce_gateway > 0 {
        cfg.insert("consecutive_gateway_failure".into(), gateway.into());
        cfg.insert(
            "enforcing_consecutive_gateway_failure_percent".into(),
            enforce_gateway.into(),
        );
        rules += 1;
    }
    let enforce_rate = percent(&o.enforcing_success_rate, 100, "enforcing_success_rate")?;
    if enforce_rate > 0 {
        cfg.insert(
            "success_rate".into(),
            json!({
                // 0 and 1 host mean the same: an evaluation needs one at least.
                "minimum_hosts": count(&o.success_rate_minimum_hosts, 5).max(1),
                "request_volume": count(&o.success_rate_request_volume, 100),
                "stdev_factor": f64::from(count(&o.success_rate_stdev_factor, 1900)) / 1000.0,
                "enforcing_percent": enforce_rate,
            }),
        );
        rules += 1;
    }
    let enforce_failures = percent(
        &o.enforcing_failure_percentage,
        0,
        "enforcing_failure_percentage",
    )?;
    if enforce_failures > 0 {
        cfg.insert(
            "failure_percentage".into(),
            json!({
                "threshold_percent": percent(&o.failure_percentage_threshold, 85, "failure_percentage_threshold")?,
                "minimum_hosts": count(&o.failure_percentage_minimum_hosts, 5).max(1),
                "request_volume": count(&o.failure_percentage_request_volume, 50),
                "enforcing_percent": enforce_failures,
            }),
        );
        rules += 1;
    }
    if rules == 0 {
        return Ok(None);
    }
    TypedConfig::with(OUTLIER_EXTENSION, &Value::Object(cfg))
        .map(Some)
        .map_err(|e| Refusal::new("", "", e))
}

fn count(v: &Option<UInt32Value>, default: u32) -> u32 {
    v.as_ref().map_or(default, |v| v.value)
}

/// A percentage field (0 to 100).
fn percent(v: &Option<UInt32Value>, default: u32, field: &str) -> Result<u32, Refusal> {
    let p = count(v, default);
    if p > 100 {
        return Err(Refusal::new(
            "",
            field,
            format!("{p} is not a percentage (0 to 100)"),
        ));
    }
    Ok(p)
}

/// A duration field, above zero.
fn period(v: &Option<PbDuration>, default: Duration, field: &str) -> Result<Duration, Refusal> {
    let Some(d) = v else { return Ok(default) };
    match duration(d) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(Refusal::new("", field, "must be more than zero")),
        Err(e) => Err(Refusal::new("", field, e)),
    }
}

/// The longest interval or timeout proxy-lb accepts, and the shortest interval.
const DAY: Duration = Duration::from_secs(24 * 3600);
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// Refuses a period proxy-lb's checker or detector would: above a day, or an interval
/// below a millisecond (it would spin).
pub(super) fn bounded(d: Duration, field: &str) -> Result<(), Refusal> {
    if d > DAY {
        return Err(Refusal::new(
            "",
            field,
            format!("{}s is above 24h", d.as_secs()),
        ));
    }
    if field.ends_with("interval") && d < MIN_INTERVAL {
        return Err(Refusal::new("", field, "must be at least 1ms"));
    }
    Ok(())
}

fn is_zero(d: &PbDuration) -> bool {
    d.seconds == 0 && d.nanos == 0
}

/// A duration as the config writes it (`1s 500ms`).
pub(super) fn humantime(d: Duration) -> Value {
    Value::String(humantime_serde::re::humantime::format_duration(d).to_string())
}
