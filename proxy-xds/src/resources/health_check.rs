//! CDS: a cluster's `health_checks` onto proxy-lb's `health_check` cluster extension:
//! one HTTP (GET) or plain TCP connect check.

use std::time::Duration;

use envoy_types::pb::envoy::{
    config::core::v3::{
        health_check::{HealthChecker, HttpHealthCheck},
        HealthCheck, RequestMethod,
    },
    r#type::v3::CodecClientType,
};
use proxy_core::config::TypedConfig;
use serde_json::{json, Value};

use super::{duration, outlier::humantime, refuse_leftover};
use crate::Refusal;

/// The registered name of proxy-lb's active health checker.
pub(super) const HEALTH_EXTENSION: &str = "health_check";

/// `HealthCheck` (envoy.config.core.v3) fields by number.
const FIELDS: super::fields::Fields = &[
    (1, "timeout"),
    (2, "interval"),
    (3, "interval_jitter"),
    (4, "unhealthy_threshold"),
    (5, "healthy_threshold"),
    (6, "alt_port"),
    (7, "reuse_connection"),
    (8, "http_health_check"),
    (9, "tcp_health_check"),
    (11, "grpc_health_check"),
    (12, "no_traffic_interval"),
    (13, "custom_health_check"),
    (14, "unhealthy_interval"),
    (15, "unhealthy_edge_interval"),
    (16, "healthy_edge_interval"),
    (17, "event_log_path"),
    (18, "interval_jitter_percent"),
    (19, "always_log_health_check_failures"),
    (20, "initial_jitter"),
    (21, "tls_options"),
    (22, "event_service"),
    (23, "transport_socket_match_criteria"),
    (24, "no_traffic_healthy_interval"),
    (25, "event_logger"),
    (26, "always_log_health_check_success"),
];
/// `HttpHealthCheck` fields by number.
const HTTP_FIELDS: super::fields::Fields = &[
    (1, "host"),
    (2, "path"),
    (3, "send"),
    (4, "receive"),
    (6, "request_headers_to_add"),
    (8, "request_headers_to_remove"),
    (9, "expected_statuses"),
    (10, "codec_client_type"),
    (11, "service_name_matcher"),
    (12, "retriable_statuses"),
    (13, "method"),
    (14, "response_buffer_size"),
];
/// `TcpHealthCheck` fields by number.
const TCP_FIELDS: super::fields::Fields =
    &[(1, "send"), (2, "receive"), (3, "proxy_protocol_config")];

/// Translates a cluster's `health_checks` (several are refused: one checker flags an
/// endpoint). `cluster` is the cluster's name, Envoy's `Host` of an HTTP check
/// without `host`.
///
/// Mapped: `timeout`, `interval`, `interval_jitter` plus `interval_jitter_percent` of
/// the interval (one random extra delay up to their sum), `unhealthy_threshold`,
/// `healthy_threshold`; an HTTP check's `path`, `host`, `expected_statuses` (200
/// when empty), `codec_client_type` HTTP1 or HTTP2, `method` GET; a TCP check without
/// payloads. Ignored as they do not change when an endpoint is healthy:
/// `reuse_connection`, `initial_jitter` (the first round is not delayed), the event
/// logs, `no_traffic_interval` and `no_traffic_healthy_interval` (an idle cluster is
/// probed at `interval`, more often than Envoy would). Other intervals are accepted
/// only when equal to `interval`; the rest is refused by field.
pub(super) fn health_checks(
    checks: &[HealthCheck],
    cluster: &str,
) -> Result<Option<TypedConfig>, Refusal> {
    let check = match checks {
        [] => return Ok(None),
        [one] => one,
        _ => {
            return Err(Refusal::new(
                "",
                "health_checks",
                "only one health check per cluster is supported",
            ))
        }
    };
    health_check(check, cluster).map_err(|r| r.within("health_checks[0]"))
}

fn health_check(h: &HealthCheck, cluster: &str) -> Result<Option<TypedConfig>, Refusal> {
    let required = |v: Option<Duration>, field: &str| {
        v.ok_or_else(|| Refusal::new("", field, "missing (required)"))
    };
    let timeout = required(period(&h.timeout, "timeout")?, "timeout")?;
    let interval = required(period(&h.interval, "interval")?, "interval")?;
    let threshold =
        |v: &Option<envoy_types::pb::google::protobuf::UInt32Value>, field: &str| match v {
            None => Err(Refusal::new("", field, "missing (required)")),
            Some(v) if v.value == 0 => Err(Refusal::new("", field, "must be 1 or more")),
            Some(v) => Ok(v.value),
        };
    let unhealthy = threshold(&h.unhealthy_threshold, "unhealthy_threshold")?;
    let healthy = threshold(&h.healthy_threshold, "healthy_threshold")?;
    let jitter_base = match &h.interval_jitter {
        None => Duration::ZERO,
        Some(d) => duration(d).map_err(|e| Refusal::new("", "interval_jitter", e))?,
    };
    if h.interval_jitter_percent > 100 {
        return Err(Refusal::new(
            "",
            "interval_jitter_percent",
            "must be at most 100",
        ));
    }
    let jitter = interval
        .checked_mul(h.interval_jitter_percent)
        .and_then(|d| jitter_base.checked_add(d / 100))
        .ok_or_else(|| Refusal::new("", "interval_jitter", "too large"))?;

    for (field, d) in [
        ("interval", interval),
        ("timeout", timeout),
        ("interval_jitter", jitter),
    ] {
        super::outlier::bounded(d, field)?;
    }
    let mut rest = h.clone();
    rest.timeout = None;
    rest.interval = None;
    rest.interval_jitter = None;
    rest.interval_jitter_percent = 0;
    rest.unhealthy_threshold = None;
    rest.healthy_threshold = None;
    rest.health_checker = None;
    // Without effect on an endpoint's health.
    rest.reuse_connection = None;
    rest.initial_jitter = None;
    rest.no_traffic_interval = None;
    rest.no_traffic_healthy_interval = None;
    #[allow(deprecated)]
    rest.event_log_path.clear();
    rest.event_logger.clear();
    rest.event_service = None;
    rest.always_log_health_check_failures = false;
    rest.always_log_health_check_success = false;
    for (field, v) in [
        ("unhealthy_interval", &mut rest.unhealthy_interval),
        ("unhealthy_edge_interval", &mut rest.unhealthy_edge_interval),
        ("healthy_edge_interval", &mut rest.healthy_edge_interval),
    ] {
        if period(v, field)?.is_some_and(|d| d == interval) {
            *v = None;
        }
    }
    refuse_leftover(&rest, FIELDS)?;

    let probe = match &h.health_checker {
        None => return Err(Refusal::new("", "health_checker", "missing (required)")),
        Some(HealthChecker::HttpHealthCheck(http)) => {
            http_probe(http, cluster).map_err(|r| r.within("http_health_check"))?
        }
        Some(HealthChecker::TcpHealthCheck(tcp)) => {
            refuse_leftover(tcp, TCP_FIELDS).map_err(|r| r.within("tcp_health_check"))?;
            json!("tcp")
        }
        Some(HealthChecker::GrpcHealthCheck(_)) => {
            return Err(Refusal::new(
                "",
                "grpc_health_check",
                "not supported: HTTP and TCP health checks are",
            ))
        }
        Some(HealthChecker::CustomHealthCheck(c)) => {
            return Err(Refusal::new(
                "",
                "custom_health_check",
                format!(
                    "{:?} is not supported: HTTP and TCP health checks are",
                    c.name
                ),
            ))
        }
    };
    let cfg = json!({
        "interval": humantime(interval),
        "jitter": humantime(jitter),
        "timeout": humantime(timeout),
        "unhealthy_threshold": unhealthy,
        "healthy_threshold": healthy,
        "probe": probe,
    });
    TypedConfig::with(HEALTH_EXTENSION, &cfg)
        .map(Some)
        .map_err(|e| Refusal::new("", "", e))
}

fn http_probe(http: &HttpHealthCheck, cluster: &str) -> Result<Value, Refusal> {
    let mut rest = http.clone();
    rest.host.clear();
    rest.path.clear();
    rest.expected_statuses.clear();
    rest.codec_client_type = 0;
    rest.method = 0;
    // Only read with `receive`, refused when set.
    rest.response_buffer_size = None;
    refuse_leftover(&rest, HTTP_FIELDS)?;
    if http.path.is_empty() {
        return Err(Refusal::new("", "path", "missing (required)"));
    }
    match RequestMethod::try_from(http.method) {
        Ok(RequestMethod::MethodUnspecified | RequestMethod::Get) => {}
        Ok(other) => {
            return Err(Refusal::new(
                "",
                "method",
                format!(
                    "{} is not supported: health checks send GET",
                    other.as_str_name()
                ),
            ))
        }
        Err(_) => {
            return Err(Refusal::new(
                "",
                "method",
                format!("unknown method {}", http.method),
            ))
        }
    }
    let version = match CodecClientType::try_from(http.codec_client_type) {
        Ok(CodecClientType::Http1) => "http1",
        Ok(CodecClientType::Http2) => "http2",
        _ => {
            return Err(Refusal::new(
                "",
                "codec_client_type",
                "only HTTP1 and HTTP2 are supported",
            ))
        }
    };
    let mut statuses = Vec::new();
    for (i, r) in http.expected_statuses.iter().enumerate() {
        // Envoy: [start, end), within 100-599.
        if !(100..600).contains(&r.start) || !(101..=600).contains(&r.end) || r.end <= r.start {
            return Err(Refusal::new(
                "",
                format!("expected_statuses[{i}]"),
                format!("[{}, {}) is not a range of HTTP statuses", r.start, r.end),
            ));
        }
        statuses.extend((r.start..r.end).filter_map(|s| u16::try_from(s).ok()));
    }
    if statuses.is_empty() {
        statuses.push(200);
    }
    statuses.sort_unstable();
    statuses.dedup();
    // Envoy sends the cluster's name as the Host when `host` is empty.
    let host = if http.host.is_empty() {
        cluster
    } else {
        &http.host
    };
    Ok(json!({"http": {
        "path": http.path,
        "host": host,
        "expected_statuses": statuses,
        "version": version,
    }}))
}

/// An optional duration field; zero is refused.
fn period(
    v: &Option<envoy_types::pb::google::protobuf::Duration>,
    field: &str,
) -> Result<Option<Duration>, Refusal> {
    let Some(d) = v else { return Ok(None) };
    match duration(d) {
        Ok(d) if !d.is_zero() => Ok(Some(d)),
        Ok(_) => Err(Refusal::new("", field, "must be more than zero")),
        Err(e) => Err(Refusal::new("", field, e)),
    }
}
