//! Whatever outlier detection, health check and circuit-breaker values a control
//! plane sends, translation never panics, and what it accepts proxy-lb builds.

use envoy_types::pb::{
    envoy::{
        config::{
            cluster::v3::{
                circuit_breakers::Thresholds, CircuitBreakers, Cluster, OutlierDetection,
            },
            core::v3::{
                health_check::{HealthChecker, HttpHealthCheck},
                HealthCheck,
            },
        },
        r#type::v3::Int64Range,
    },
    google::protobuf::{Duration as PbDuration, UInt32Value},
};
use proptest::prelude::*;
use proxy_lb::{health::HealthCheckConfig, outlier::OutlierConfig};

use super::cluster;

fn u32v() -> impl Strategy<Value = Option<UInt32Value>> {
    prop_oneof![
        3 => Just(None),
        1 => any::<u32>().prop_map(|value| Some(UInt32Value { value })),
        4 => (0u32..120).prop_map(|value| Some(UInt32Value { value })),
    ]
}

fn duration() -> impl Strategy<Value = Option<PbDuration>> {
    prop_oneof![
        Just(None),
        (any::<i64>(), any::<i32>())
            .prop_map(|(seconds, nanos)| Some(PbDuration { seconds, nanos })),
        (0i64..100_000, 0i32..1_000_000_000)
            .prop_map(|(seconds, nanos)| Some(PbDuration { seconds, nanos })),
    ]
}

prop_compose! {
    fn outlier()(
        counts in proptest::collection::vec(u32v(), 12),
        times in proptest::collection::vec(duration(), 3),
        split in any::<bool>(),
    ) -> OutlierDetection {
        OutlierDetection {
            consecutive_5xx: counts[0],
            enforcing_consecutive_5xx: counts[1],
            consecutive_gateway_failure: counts[2],
            enforcing_consecutive_gateway_failure: counts[3],
            max_ejection_percent: counts[4],
            enforcing_success_rate: counts[5],
            success_rate_minimum_hosts: counts[6],
            success_rate_stdev_factor: counts[7],
            enforcing_failure_percentage: counts[8],
            failure_percentage_threshold: counts[9],
            failure_percentage_minimum_hosts: counts[10],
            failure_percentage_request_volume: counts[11],
            interval: times[0],
            base_ejection_time: times[1],
            max_ejection_time: times[2],
            split_external_local_origin_errors: split,
            ..OutlierDetection::default()
        }
    }
}

prop_compose! {
    fn health()(
        times in proptest::collection::vec(duration(), 3),
        thresholds in proptest::collection::vec(u32v(), 2),
        jitter_percent in prop_oneof![Just(0u32), any::<u32>()],
        statuses in proptest::collection::vec((any::<i64>(), any::<i64>()), 0..3),
        path in "/[a-z]{0,4}",
    ) -> HealthCheck {
        HealthCheck {
            timeout: times[0],
            interval: times[1],
            interval_jitter: times[2],
            interval_jitter_percent: jitter_percent,
            unhealthy_threshold: thresholds[0],
            healthy_threshold: thresholds[1],
            health_checker: Some(HealthChecker::HttpHealthCheck(HttpHealthCheck {
                path,
                expected_statuses: statuses
                    .into_iter()
                    .map(|(start, end)| Int64Range { start, end })
                    .collect(),
                ..HttpHealthCheck::default()
            })),
            ..HealthCheck::default()
        }
    }
}

proptest! {
    #[test]
    fn accepted_policies_are_valid_for_proxy_lb(
        o in proptest::option::of(outlier()),
        h in proptest::option::of(health()),
        limits in proptest::collection::vec(u32v(), 4),
    ) {
        let c = Cluster {
            name: "c".into(),
            outlier_detection: o,
            health_checks: h.into_iter().collect(),
            circuit_breakers: Some(CircuitBreakers {
                thresholds: vec![Thresholds {
                    max_connections: limits[0],
                    max_pending_requests: limits[1],
                    max_requests: limits[2],
                    max_retries: limits[3],
                    ..Thresholds::default()
                }],
                per_host_thresholds: vec![],
            }),
            ..Cluster::default()
        };
        let Ok(x) = cluster(&c) else { return Ok(()) };
        for e in &x.config.extensions {
            match e.typed.as_str() {
                "outlier_detection" => {
                    let cfg: OutlierConfig = e.config.parse().map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert!(cfg.validate().is_ok(), "{:?}", cfg.validate());
                }
                "health_check" => {
                    let cfg: HealthCheckConfig = e.config.parse().map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert!(cfg.validate().is_ok(), "{:?}", cfg.validate());
                }
                other => prop_assert!(false, "unexpected extension {other}"),
            }
        }
    }
}

#[test]
fn periods_proxy_lb_refuses_are_refused_by_name() {
    let day_and_more = Some(PbDuration {
        seconds: 86_401,
        nanos: 0,
    });
    let c = Cluster {
        name: "c".into(),
        outlier_detection: Some(OutlierDetection {
            interval: day_and_more,
            ..OutlierDetection::default()
        }),
        ..Cluster::default()
    };
    assert_eq!(
        cluster(&c).map(|_| ()).unwrap_err().to_string(),
        "cluster \"c\": outlier_detection.interval: 86401s is above 24h"
    );
    let c = Cluster {
        name: "c".into(),
        health_checks: vec![HealthCheck {
            timeout: Some(PbDuration {
                seconds: 1,
                nanos: 0,
            }),
            interval: Some(PbDuration {
                seconds: 0,
                nanos: 1,
            }),
            unhealthy_threshold: Some(UInt32Value { value: 1 }),
            healthy_threshold: Some(UInt32Value { value: 1 }),
            health_checker: Some(HealthChecker::HttpHealthCheck(HttpHealthCheck {
                path: "/".into(),
                ..HttpHealthCheck::default()
            })),
            ..HealthCheck::default()
        }],
        ..Cluster::default()
    };
    assert_eq!(
        cluster(&c).map(|_| ()).unwrap_err().to_string(),
        "cluster \"c\": health_checks[0].interval: must be at least 1ms"
    );
}
