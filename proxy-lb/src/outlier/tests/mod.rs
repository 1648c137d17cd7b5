use std::{num::NonZeroU32, time::Duration};

use proxy_core::config::Percent;

use super::*;

mod detection;

fn pc(v: f64) -> Percent {
    Percent::try_from(v).unwrap()
}

fn nz(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v).unwrap()
}

#[test]
fn ejection_time_grows_and_caps() {
    let (b, m) = (Duration::from_secs(30), Duration::from_secs(100));
    assert_eq!(ejection_time(b, m, 0), b);
    assert_eq!(ejection_time(b, m, 1), b);
    assert_eq!(ejection_time(b, m, 3), Duration::from_secs(90));
    assert_eq!(ejection_time(b, m, 4), m);
    assert_eq!(
        ejection_time(b, Duration::from_secs(1), 9),
        b,
        "max below base"
    );
    assert_eq!(ejection_time(b, m, u32::MAX), m);
}

#[test]
fn max_ejection_percent_and_panic_threshold() {
    let may = |total, ejected, healthy, max: f64, panic: f64| {
        may_eject(total, ejected, healthy, pc(max), pc(panic))
    };
    // 10 hosts, 10%: one may go, a second not.
    assert!(may(10, 0, 10, 10.0, 50.0));
    assert!(!may(10, 1, 9, 10.0, 50.0));
    // 10 hosts, 30%: three may go.
    assert!(may(10, 2, 8, 30.0, 0.0));
    assert!(!may(10, 3, 7, 30.0, 0.0));
    // fractions: 12.5% of 16 is two
    assert!(may(16, 1, 15, 12.5, 0.0));
    assert!(!may(16, 2, 14, 12.5, 0.0));
    // at least one even when 10% of 3 is < 1
    assert!(may(3, 0, 3, 10.0, 0.0));
    // panic threshold 50%: 4 hosts, 2 healthy -> ejecting one leaves 1 = 25% < 50%
    assert!(!may(4, 1, 2, 100.0, 50.0));
    assert!(may(4, 1, 3, 100.0, 50.0));
    // a single host is never ejected under a panic threshold
    assert!(!may(1, 0, 1, 100.0, 50.0));
    assert!(may(1, 0, 1, 100.0, 0.0));
    // nothing healthy, nothing to eject, or max 0
    assert!(!may(3, 0, 0, 100.0, 0.0));
    assert!(!may(0, 0, 0, 100.0, 0.0));
    assert!(!may(3, 0, 3, 0.0, 0.0));
}

fn stats(v: &[(u64, u64)]) -> Vec<IntervalStats> {
    v.iter()
        .enumerate()
        .map(|(index, &(success, total))| IntervalStats {
            index,
            success,
            total,
        })
        .collect()
}

#[test]
fn success_rate_finds_the_low_outlier() {
    let cfg = SuccessRateConfig {
        minimum_hosts: nz(5),
        request_volume: 100,
        stdev_factor: 1.9,
        enforcing_percent: Percent::HUNDRED,
    };
    let s = stats(&[
        (100, 100),
        (99, 100),
        (100, 100),
        (98, 100),
        (100, 100),
        (10, 100),
    ]);
    assert_eq!(success_rate_outliers(&s, &cfg), vec![5]);
    // too few requests: not evaluated
    let s = stats(&[
        (100, 100),
        (99, 100),
        (100, 100),
        (98, 100),
        (100, 100),
        (1, 10),
    ]);
    assert!(success_rate_outliers(&s, &cfg).is_empty());
    // too few hosts
    let s = stats(&[(100, 100), (10, 100)]);
    assert!(success_rate_outliers(&s, &cfg).is_empty());
    // all equal: nobody
    let s = stats(&[(50, 100); 6]);
    assert!(success_rate_outliers(&s, &cfg).is_empty());
}

#[test]
fn failure_percentage_uses_the_threshold() {
    let cfg = FailurePercentageConfig {
        threshold_percent: pc(50.0),
        minimum_hosts: nz(2),
        request_volume: 10,
        enforcing_percent: Percent::HUNDRED,
    };
    let s = stats(&[(10, 10), (5, 10), (6, 10), (0, 5)]);
    assert_eq!(failure_percentage_outliers(&s, &cfg), vec![1]);
    let s = stats(&[(0, 10)]);
    assert!(
        failure_percentage_outliers(&s, &cfg).is_empty(),
        "minimum hosts"
    );
}

#[test]
fn consecutive_counters_trigger_at_threshold_multiples() {
    let c = EndpointCounters::default();
    let t = Thresholds {
        consecutive_5xx: 3,
        consecutive_gateway: 2,
    };
    let f = Attempt::Failure { gateway: false };
    let g = Attempt::Failure { gateway: true };
    assert_eq!(c.record(f, t), None);
    assert_eq!(c.record(f, t), None);
    assert_eq!(c.record(Attempt::Success, t), None);
    assert_eq!(c.record(f, t), None);
    assert_eq!(c.record(g, t), None);
    assert_eq!(c.record(g, t), Some(EjectionReason::Consecutive5xx));
    assert_eq!(c.consecutive_gateway(), 2);
    let c = EndpointCounters::default();
    assert_eq!(c.record(g, t), None);
    assert_eq!(
        c.record(g, t),
        Some(EjectionReason::ConsecutiveGatewayFailure)
    );
    assert_eq!(c.record(g, t), Some(EjectionReason::Consecutive5xx));
    assert_eq!(
        c.record(g, t),
        Some(EjectionReason::ConsecutiveGatewayFailure)
    );
    let s = c.take_interval(4);
    assert_eq!((s.index, s.success, s.total), (4, 0, 4));
    assert_eq!(c.take_interval(4).total, 0);
    let off = Thresholds {
        consecutive_5xx: 0,
        consecutive_gateway: 0,
    };
    let c = EndpointCounters::default();
    assert!((0..20).all(|_| c.record(g, off).is_none()));
}

#[test]
fn enforcement_chance() {
    assert!(enforced(Percent::HUNDRED, 99));
    assert!(!enforced(Percent::ZERO, 0));
    assert_eq!(
        (0..1_000_000).filter(|r| enforced(pc(30.0), *r)).count(),
        300_000
    );
    assert_eq!(
        (0..1_000_000).filter(|r| enforced(pc(0.5), *r)).count(),
        5_000
    );
}

/// Parses and validates `yaml`, with `consecutive_5xx: 5` added when it turns no
/// ejection rule on (so that the other checks are reached).
fn cfg(yaml: &str) -> Result<OutlierConfig, String> {
    let mut c: OutlierConfig = proxy_core::config::from_yaml(yaml).map_err(|e| e.to_string())?;
    let rules_on = c.consecutive_5xx.is_some()
        || c.consecutive_gateway_failure.is_some()
        || c.success_rate.is_some()
        || c.failure_percentage.is_some();
    if !rules_on {
        c.consecutive_5xx = Some(nz(5));
    }
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

#[test]
fn config_validation_names_fields() {
    assert!(cfg("{}").is_ok());
    let none: OutlierConfig = proxy_core::config::from_yaml("{}").unwrap();
    assert!(none
        .validate()
        .unwrap_err()
        .to_string()
        .starts_with("no ejection rule is on"));
    let e = cfg("max_ejection_percent: 101").unwrap_err();
    assert_eq!(
        e, "max_ejection_percent: 101 is not a percentage from 0 to 100",
        "{e}"
    );
    let e = cfg("success_rate: {stdev_factor: -1}").unwrap_err();
    assert!(e.starts_with("success_rate.stdev_factor: "), "{e}");
    let c = cfg("success_rate: {stdev_factor: 1.5, enforcing_percent: 12.5}").unwrap();
    assert_eq!(c.success_rate.map(|s| s.stdev_factor), Some(1.5));
    assert!(cfg("success_rate: {stdev_factor: 1900, enforcing: 100}")
        .unwrap_err()
        .contains("enforcing"));
    assert!(cfg("consecutive_5xx: 0")
        .unwrap_err()
        .starts_with("consecutive_5xx: "));
    assert!(cfg("panic_threshold: 50")
        .unwrap_err()
        .contains("panic_threshold"));
    assert!(cfg("interval: 0s").unwrap_err().starts_with("interval:"));
    assert!(cfg("interval: 100years")
        .unwrap_err()
        .starts_with("interval:"));
    // Sub-millisecond: the evaluation task would spin.
    assert!(cfg("interval: 100us")
        .unwrap_err()
        .starts_with("interval: 100µs is below 1ms"));
    assert!(cfg("interval: 1ms").is_ok());
    assert!(cfg("{base_ejection_time: 10s, max_ejection_time: 1s}")
        .unwrap_err()
        .starts_with("max_ejection_time:"));
    assert!(cfg("failure_percentage: {threshold_percent: 150}")
        .unwrap_err()
        .starts_with("failure_percentage.threshold_percent"));
    assert!(cfg("readmission: {probe: {http: {path: nope}}}")
        .unwrap_err()
        .starts_with("readmission.probe.http.path"));
    assert!(
        cfg("readmission: {probe: {http: {expected_statuses: [700]}}}")
            .unwrap_err()
            .starts_with("readmission.probe.http.expected_statuses[0]")
    );
    assert!(cfg("healing: {webhook: {url: \"https://x/y\"}}")
        .unwrap_err()
        .starts_with("healing.webhook.url"));
    assert!(cfg("bogus: 1").is_err());
    let c = cfg("{interval: 100ms, readmission: {probe: tcp}, healing: {webhook: {url: \"http://127.0.0.1:1/x\"}}}").unwrap();
    assert_eq!(c.interval, Duration::from_millis(100));
}

#[test]
fn latency_histogram_percentiles() {
    let h = LatencyHistogram::default();
    for _ in 0..90 {
        h.record(Duration::from_millis(1));
    }
    for _ in 0..10 {
        h.record(Duration::from_millis(300));
    }
    let p = |v: f64| Percent::try_from(v).unwrap();
    let (n, p90) = h.take(p(90.0));
    assert_eq!(n, 100);
    assert!(
        p90 >= Duration::from_millis(1) && p90 < Duration::from_micros(1200),
        "{p90:?}"
    );
    assert_eq!(h.take(p(90.0)), (0, Duration::ZERO), "taken: reset");
    for _ in 0..89 {
        h.record(Duration::from_millis(1));
    }
    for _ in 0..11 {
        h.record(Duration::from_millis(300));
    }
    let (_, p90) = h.take(p(90.0));
    assert!(
        p90 >= Duration::from_millis(300) && p90 < Duration::from_millis(360),
        "{p90:?}"
    );
    h.record(Duration::from_secs(3600));
    assert!(
        h.take(p(50.0)).1 >= Duration::from_secs(100),
        "long latencies land in the last bucket"
    );
}

#[test]
fn latency_outliers_need_factor_floor_volume_and_hosts() {
    let cfg = LatencyConfig {
        factor: 3.0,
        threshold: Duration::from_millis(100),
        minimum_hosts: NonZeroU32::new(3).unwrap(),
        request_volume: 10,
        ..LatencyConfig::default()
    };
    let s = |index, count, ms| LatencyStats {
        index,
        count,
        percentile: Duration::from_millis(ms),
    };
    let (out, cutoff) = latency_outliers(&[s(0, 50, 300), s(1, 50, 2), s(2, 50, 3)], &cfg);
    assert_eq!((out, cutoff), (vec![0], Some(Duration::from_millis(100))));
    // Above 3x the median but under the floor: kept.
    let (out, _) = latency_outliers(&[s(0, 50, 90), s(1, 50, 2), s(2, 50, 3)], &cfg);
    assert!(out.is_empty());
    // Everyone slow alike: nobody stands out.
    let (out, cutoff) = latency_outliers(&[s(0, 50, 900), s(1, 50, 800), s(2, 50, 1000)], &cfg);
    assert_eq!((out, cutoff), (vec![], Some(Duration::from_millis(2700))));
    // Too few requests, or too few hosts with enough of them: no evaluation.
    let (out, cutoff) = latency_outliers(&[s(0, 50, 300), s(1, 5, 2), s(2, 50, 3)], &cfg);
    assert_eq!((out, cutoff), (vec![], None));
}

#[test]
fn latency_config_is_validated() {
    let cfg = |latency: LatencyConfig| OutlierConfig {
        latency: Some(latency),
        ..OutlierConfig::default()
    };
    assert!(
        cfg(LatencyConfig::default()).validate().is_ok(),
        "latency alone is a rule"
    );
    let e = cfg(LatencyConfig {
        factor: 0.5,
        ..LatencyConfig::default()
    })
    .validate()
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "latency.factor: 0.5 is not a factor of 1 or more"
    );
    let parsed: OutlierConfig =
        proxy_core::config::from_yaml("{latency: {percentile: 99, factor: 2, threshold: 250ms}}")
            .unwrap();
    let l = parsed.latency.unwrap();
    assert_eq!((l.factor, l.threshold), (2.0, Duration::from_millis(250)));
    assert!(proxy_core::config::from_yaml::<OutlierConfig>("{latency: {factr: 2}}").is_err());
}
