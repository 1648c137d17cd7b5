//! Outlier detection, health checks and circuit breakers of a CDS cluster: each
//! mapping checked against the config proxy-lb parses, each refusal by its path.

use std::time::Duration;

use envoy_types::pb::{
    envoy::{
        config::{
            cluster::v3::{
                circuit_breakers::Thresholds, cluster::CommonLbConfig, CircuitBreakers, Cluster,
                OutlierDetection,
            },
            core::v3::{
                health_check::{
                    CustomHealthCheck, GrpcHealthCheck, HealthChecker, HttpHealthCheck, Payload,
                    TcpHealthCheck,
                },
                HealthCheck, RequestMethod, RoutingPriority,
            },
        },
        r#type::v3::{CodecClientType, Int64Range, Percent},
    },
    google::protobuf::{BoolValue, Duration as PbDuration, UInt32Value},
};
use proxy_core::config::{CircuitBreakersConfig, TypedConfig};
use proxy_lb::{
    health::{HealthCheckConfig, HttpProbeConfig, HttpVersion, ProbeConfig},
    outlier::OutlierConfig,
};

use super::cluster;

fn named(name: &str) -> Cluster {
    Cluster {
        name: name.into(),
        ..Cluster::default()
    }
}

fn u32v(value: u32) -> Option<UInt32Value> {
    Some(UInt32Value { value })
}

fn secs(seconds: i64) -> Option<PbDuration> {
    Some(PbDuration { seconds, nanos: 0 })
}

fn refused(c: &Cluster) -> String {
    cluster(c).expect_err("refused").to_string()
}

fn extension(c: &Cluster, name: &str) -> Option<TypedConfig> {
    cluster(c)
        .expect("accepted")
        .config
        .extensions
        .into_iter()
        .find(|e| e.typed == name)
}

fn outlier(c: &Cluster) -> Option<OutlierConfig> {
    extension(c, "outlier_detection").map(|e| {
        let cfg: OutlierConfig = e.config.parse().expect("proxy-lb parses it");
        cfg.validate().expect("proxy-lb accepts it");
        cfg
    })
}

fn health(c: &Cluster) -> Option<HealthCheckConfig> {
    extension(c, "health_check").map(|e| {
        let cfg: HealthCheckConfig = e.config.parse().expect("proxy-lb parses it");
        cfg.validate().expect("proxy-lb accepts it");
        cfg
    })
}

fn pc(v: f64) -> proxy_core::config::Percent {
    v.try_into().expect("a percentage")
}

#[test]
fn outlier_detection_defaults_are_envoys() {
    let mut c = named("a");
    c.outlier_detection = Some(OutlierDetection::default());
    let o = outlier(&c).expect("attached");
    assert_eq!(o.interval, Duration::from_secs(10));
    assert_eq!(o.base_ejection_time, Duration::from_secs(30));
    assert_eq!(o.max_ejection_time, Duration::from_secs(300));
    assert_eq!(o.max_ejection_percent, pc(10.0));
    assert_eq!(o.panic_threshold_percent, pc(50.0));
    assert_eq!(o.consecutive_5xx.map(|n| n.get()), Some(5));
    assert_eq!(o.enforcing_consecutive_5xx_percent, pc(100.0));
    // Envoy enforces gateway failures and failure percentage at 0% by default.
    assert_eq!(o.consecutive_gateway_failure, None);
    assert_eq!(o.failure_percentage, None);
    let sr = o.success_rate.expect("success rate is on by default");
    assert_eq!(sr.minimum_hosts.get(), 5);
    assert_eq!(sr.request_volume, 100);
    assert_eq!(sr.stdev_factor, 1.9);
    assert_eq!(sr.enforcing_percent, pc(100.0));
}

#[test]
fn outlier_detection_fields_are_mapped() {
    let mut c = named("a");
    c.common_lb_config = Some(CommonLbConfig {
        healthy_panic_threshold: Some(Percent { value: 30.0 }),
        ..CommonLbConfig::default()
    });
    c.outlier_detection = Some(OutlierDetection {
        consecutive_5xx: u32v(3),
        enforcing_consecutive_5xx: u32v(50),
        consecutive_gateway_failure: u32v(2),
        enforcing_consecutive_gateway_failure: u32v(100),
        interval: Some(PbDuration {
            seconds: 1,
            nanos: 500_000_000,
        }),
        base_ejection_time: secs(400),
        max_ejection_percent: u32v(100),
        enforcing_success_rate: u32v(0),
        failure_percentage_threshold: u32v(60),
        enforcing_failure_percentage: u32v(90),
        failure_percentage_minimum_hosts: u32v(0),
        failure_percentage_request_volume: u32v(7),
        // Only read when local-origin errors are split: changes nothing.
        consecutive_local_origin_failure: u32v(9),
        max_ejection_time_jitter: secs(0),
        always_eject_one_host: Some(BoolValue { value: true }),
        ..OutlierDetection::default()
    });
    let o = outlier(&c).expect("attached");
    assert_eq!(o.interval, Duration::from_millis(1500));
    assert_eq!(o.base_ejection_time, Duration::from_secs(400));
    // Absent: 300 s or the base, whichever is larger.
    assert_eq!(o.max_ejection_time, Duration::from_secs(400));
    assert_eq!(o.max_ejection_percent, pc(100.0));
    assert_eq!(o.panic_threshold_percent, pc(30.0));
    assert_eq!(o.consecutive_5xx.map(|n| n.get()), Some(3));
    assert_eq!(o.enforcing_consecutive_5xx_percent, pc(50.0));
    assert_eq!(o.consecutive_gateway_failure.map(|n| n.get()), Some(2));
    assert_eq!(o.success_rate, None);
    let fp = o.failure_percentage.expect("failure percentage");
    assert_eq!(fp.threshold_percent, pc(60.0));
    assert_eq!(fp.minimum_hosts.get(), 1);
    assert_eq!(fp.request_volume, 7);
    assert_eq!(fp.enforcing_percent, pc(90.0));
}

#[test]
fn outlier_detection_that_never_ejects_attaches_nothing() {
    let mut c = named("a");
    c.outlier_detection = Some(OutlierDetection {
        consecutive_5xx: u32v(0),
        enforcing_success_rate: u32v(0),
        ..OutlierDetection::default()
    });
    assert!(cluster(&c).expect("accepted").config.extensions.is_empty());
}

#[test]
fn outlier_detection_refusals_name_the_field() {
    let with = |o: OutlierDetection| {
        let mut c = named("a");
        c.outlier_detection = Some(o);
        refused(&c)
    };
    assert_eq!(
        with(OutlierDetection {
            split_external_local_origin_errors: true,
            ..Default::default()
        }),
        "cluster \"a\": outlier_detection.split_external_local_origin_errors: not supported: \
         local-origin failures count as 5xx here (Envoy's default)"
    );
    assert!(with(OutlierDetection {
        max_ejection_time_jitter: secs(1),
        ..Default::default()
    })
    .contains("outlier_detection.max_ejection_time_jitter: not supported"));
    assert!(with(OutlierDetection {
        successful_active_health_check_uneject_host: Some(BoolValue { value: true }),
        ..Default::default()
    })
    .contains("outlier_detection.successful_active_health_check_uneject_host: not supported"));
    assert!(with(OutlierDetection {
        detect_degraded_hosts: Some(BoolValue { value: true }),
        ..Default::default()
    })
    .contains("outlier_detection.detect_degraded_hosts: not supported"));
    assert!(with(OutlierDetection {
        always_eject_one_host: Some(BoolValue { value: true }),
        max_ejection_percent: u32v(0),
        ..Default::default()
    })
    .contains("outlier_detection.always_eject_one_host: not supported"));
    assert!(with(OutlierDetection {
        monitors: vec![Default::default()],
        ..Default::default()
    })
    .contains("outlier_detection.monitors: not supported"));
    assert!(with(OutlierDetection {
        max_ejection_percent: u32v(101),
        ..Default::default()
    })
    .contains("outlier_detection.max_ejection_percent: 101 is not a percentage"));
    assert!(with(OutlierDetection {
        interval: secs(0),
        ..Default::default()
    })
    .contains("outlier_detection.interval: must be more than zero"));
    assert!(with(OutlierDetection {
        base_ejection_time: secs(60),
        max_ejection_time: secs(10),
        ..Default::default()
    })
    .contains("outlier_detection.max_ejection_time: must not be below base_ejection_time"));
}

fn http_check(http: HttpHealthCheck) -> HealthCheck {
    HealthCheck {
        timeout: secs(1),
        interval: secs(5),
        unhealthy_threshold: u32v(2),
        healthy_threshold: u32v(1),
        health_checker: Some(HealthChecker::HttpHealthCheck(http)),
        ..HealthCheck::default()
    }
}

#[test]
fn http_and_tcp_health_checks_are_mapped() {
    let mut c = named("web");
    let mut check = http_check(HttpHealthCheck {
        path: "/healthz".into(),
        expected_statuses: vec![
            Int64Range {
                start: 200,
                end: 205,
            },
            Int64Range {
                start: 204,
                end: 205,
            },
        ],
        codec_client_type: CodecClientType::Http2 as i32,
        method: RequestMethod::Get as i32,
        ..HttpHealthCheck::default()
    });
    check.interval_jitter = Some(PbDuration {
        seconds: 0,
        nanos: 100_000_000,
    });
    check.interval_jitter_percent = 10;
    check.no_traffic_interval = secs(60);
    check.unhealthy_interval = secs(5);
    c.health_checks = vec![check];
    let h = health(&c).expect("attached");
    assert_eq!(h.interval, Duration::from_secs(5));
    assert_eq!(h.timeout, Duration::from_secs(1));
    assert_eq!(h.jitter, Duration::from_millis(600));
    assert_eq!(h.unhealthy_threshold.get(), 2);
    assert_eq!(h.healthy_threshold.get(), 1);
    assert_eq!(
        h.probe,
        ProbeConfig::Http(HttpProbeConfig {
            path: "/healthz".into(),
            expected_statuses: vec![200, 201, 202, 203, 204],
            // Envoy's Host without `host`: the cluster's name.
            host: Some("web".into()),
            version: HttpVersion::Http2,
        })
    );
    let mut c = named("db");
    c.health_checks = vec![HealthCheck {
        health_checker: Some(HealthChecker::TcpHealthCheck(TcpHealthCheck::default())),
        ..http_check(HttpHealthCheck::default())
    }];
    assert_eq!(health(&c).expect("attached").probe, ProbeConfig::Tcp);
}

#[test]
fn health_check_refusals_name_the_field() {
    let with = |h: HealthCheck| {
        let mut c = named("a");
        c.health_checks = vec![h];
        refused(&c)
    };
    let http = |f: fn(&mut HttpHealthCheck)| {
        let mut h = HttpHealthCheck {
            path: "/".into(),
            ..HttpHealthCheck::default()
        };
        f(&mut h);
        with(http_check(h))
    };
    assert!(with(HealthCheck {
        health_checker: Some(HealthChecker::GrpcHealthCheck(GrpcHealthCheck::default())),
        ..http_check(HttpHealthCheck::default())
    })
    .contains("health_checks[0].grpc_health_check: not supported"));
    assert!(with(HealthCheck {
        health_checker: Some(HealthChecker::CustomHealthCheck(CustomHealthCheck {
            name: "redis".into(),
            config_type: None,
        })),
        ..http_check(HttpHealthCheck::default())
    })
    .contains("health_checks[0].custom_health_check: \"redis\" is not supported"));
    assert!(with(HealthCheck {
        health_checker: Some(HealthChecker::TcpHealthCheck(TcpHealthCheck {
            send: Some(Payload::default()),
            ..TcpHealthCheck::default()
        })),
        ..http_check(HttpHealthCheck::default())
    })
    .contains("health_checks[0].tcp_health_check.send: not supported"));
    assert!(http(|h| h.method = RequestMethod::Post as i32)
        .contains("health_checks[0].http_health_check.method: POST is not supported"));
    assert!(http(|h| h.path.clear())
        .contains("health_checks[0].http_health_check.path: missing (required)"));
    assert!(http(|h| h.retriable_statuses = vec![Int64Range::default()])
        .contains("health_checks[0].http_health_check.retriable_statuses: not supported"));
    assert!(
        http(|h| h.codec_client_type = CodecClientType::Http3 as i32)
            .contains("http_health_check.codec_client_type: only HTTP1 and HTTP2")
    );
    assert!(http(|h| h.expected_statuses = vec![Int64Range {
        start: 200,
        end: 200
    }])
    .contains("http_health_check.expected_statuses[0]: [200, 200) is not a range"));
    assert!(with(HealthCheck {
        alt_port: u32v(9000),
        ..http_check(HttpHealthCheck {
            path: "/".into(),
            ..Default::default()
        })
    })
    .contains("health_checks[0].alt_port: not supported"));
    assert!(with(HealthCheck {
        unhealthy_interval: secs(1),
        ..http_check(HttpHealthCheck {
            path: "/".into(),
            ..Default::default()
        })
    })
    .contains("health_checks[0].unhealthy_interval: not supported"));
    assert!(with(HealthCheck {
        timeout: None,
        ..http_check(HttpHealthCheck::default())
    })
    .contains("health_checks[0].timeout: missing (required)"));
    assert!(with(HealthCheck {
        healthy_threshold: u32v(0),
        ..http_check(HttpHealthCheck::default())
    })
    .contains("health_checks[0].healthy_threshold: must be 1 or more"));
    let mut c = named("a");
    c.health_checks = vec![HealthCheck::default(), HealthCheck::default()];
    assert!(refused(&c).contains("health_checks: only one health check per cluster"));
}

fn thresholds(t: Vec<Thresholds>) -> Cluster {
    let mut c = named("a");
    c.circuit_breakers = Some(CircuitBreakers {
        thresholds: t,
        per_host_thresholds: vec![],
    });
    c
}

#[test]
fn circuit_breakers_map_onto_the_cluster_budgets() {
    let limits = |c: &Cluster| cluster(c).expect("accepted").config.circuit_breakers;
    // Absent: Envoy's defaults.
    let envoy = CircuitBreakersConfig {
        max_requests: Some(1024),
        max_retries: Some(3),
        max_connections: Some(1024),
        max_pending_requests: Some(1024),
    };
    assert_eq!(limits(&named("a")), envoy);
    assert_eq!(limits(&thresholds(vec![])), envoy);
    // Unlimited stays unlimited, as Istio sends it.
    let max = u32v(u32::MAX);
    let istio = thresholds(vec![Thresholds {
        max_connections: max,
        max_pending_requests: max,
        max_requests: max,
        max_retries: max,
        track_remaining: true,
        ..Thresholds::default()
    }]);
    assert_eq!(limits(&istio), CircuitBreakersConfig::default());
    let set = thresholds(vec![
        Thresholds {
            max_requests: u32v(100),
            max_retries: u32v(0),
            max_connections: max,
            ..Thresholds::default()
        },
        // HIGH: no route here is of high priority.
        Thresholds {
            priority: RoutingPriority::High as i32,
            max_requests: u32v(1),
            max_connections: u32v(1),
            ..Thresholds::default()
        },
    ]);
    assert_eq!(
        limits(&set),
        CircuitBreakersConfig {
            max_requests: Some(100),
            max_retries: Some(0),
            // Unlimited as given; the pending requests absent: Envoy's 1024.
            max_connections: None,
            max_pending_requests: Some(1024),
        }
    );
    // Istio's DestinationRule `connectionPool.tcp.maxConnections: 2` and
    // `http.http1MaxPendingRequests: 5`, the rest unlimited.
    let pool = thresholds(vec![Thresholds {
        max_connections: u32v(2),
        max_pending_requests: u32v(5),
        max_requests: max,
        max_retries: max,
        ..Thresholds::default()
    }]);
    assert_eq!(
        limits(&pool),
        CircuitBreakersConfig {
            max_connections: Some(2),
            max_pending_requests: Some(5),
            ..CircuitBreakersConfig::default()
        }
    );
}

#[test]
fn circuit_breakers_we_cannot_honour_are_refused() {
    let one = |t: Thresholds| refused(&thresholds(vec![t]));
    assert!(one(Thresholds {
        max_connection_pools: u32v(10),
        ..Thresholds::default()
    })
    .contains("circuit_breakers.thresholds[0].max_connection_pools: only 4294967295"));
    assert!(one(Thresholds {
        retry_budget: Some(Default::default()),
        ..Thresholds::default()
    })
    .contains("circuit_breakers.thresholds[0].retry_budget: not supported"));
    assert!(refused(&thresholds(vec![
        Thresholds::default(),
        Thresholds::default()
    ]))
    .contains("thresholds[1].priority: DEFAULT thresholds given twice"));
    let mut c = thresholds(vec![]);
    if let Some(cb) = &mut c.circuit_breakers {
        cb.per_host_thresholds = vec![Thresholds::default()];
    }
    assert!(refused(&c).contains("circuit_breakers.per_host_thresholds: not supported"));
}

/// The fuzz seeds of an Istio-shaped cluster (ring hash, outlier detection, an HTTP
/// health check, unlimited breakers, mTLS with a SPIFFE SAN matcher) and of a route
/// with hash policies: both taken whole.
#[test]
fn istio_shaped_seeds_are_taken() {
    use envoy_types::pb::{envoy::config::route::v3::RouteConfiguration, google::protobuf::Any};
    use prost::Message;

    let seed = include_bytes!("../../fuzz/seeds/resource/cds-istio-policies");
    let c = Cluster::decode(&seed[1..]).expect("a cluster");
    let x = cluster(&c).expect("accepted");
    assert_eq!(x.config.lb.typed, "ring_hash");
    let names: Vec<&str> = x
        .config
        .extensions
        .iter()
        .map(|e| e.typed.as_str())
        .collect();
    assert_eq!(names, ["outlier_detection", "health_check"]);
    assert_eq!(x.config.circuit_breakers, CircuitBreakersConfig::default());
    let tls: proxy_tls::config::OriginationConfig = x
        .config
        .transport
        .expect("tls")
        .config
        .parse()
        .expect("proxy-tls parses it");
    assert_eq!(tls.subject_alt_names.len(), 1);
    assert_eq!(
        x.secrets,
        ["ROOTCA".to_owned(), "default".to_owned()].into()
    );

    let seed = include_bytes!("../../fuzz/seeds/resource/rds-hash-policy");
    let any = Any {
        type_url: super::super::ROUTE_TYPE.into(),
        value: seed[1..].to_vec(),
    };
    let rc: RouteConfiguration =
        super::super::decode(&any, super::super::ROUTE_TYPE, "r").expect("routes");
    let routes = super::super::route_configuration(&rc).expect("accepted");
    let filters: Vec<&str> = routes.virtual_hosts[0].routes[0]
        .filters
        .iter()
        .map(|f| f.typed.as_str())
        .collect();
    assert_eq!(filters, ["route_hash"]);
}
