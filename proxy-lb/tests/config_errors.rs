//! One bad value per section of this crate, built the way the proxy builds a config
//! (`Config` + `Snapshot::build` with proxy-lb registered): every mistake names its
//! full field path from the document root, in proxy-core's one `path: reason` form.
//! Nothing here binds a socket or starts a runtime.

#![allow(clippy::unwrap_used)]

use proxy_core::{config::Config, snapshot::Snapshot, Registry};
use proxy_test_support::yaml;

fn registry() -> Registry {
    let mut r = Registry::default();
    proxy_lb::register(&mut r);
    r
}

/// A config with one listener whose `http_filters` are `filters`, routing to cluster
/// `app` (endpoints labelled zone z1 / group g1) with `lb` and `extensions`.
fn config(filters: &str, lb: &str, extensions: &str) -> String {
    yaml::config(
        &[yaml::listener(
            "main",
            "app",
            &[&format!("http_filters: {filters}")],
        )],
        &[format!(
            "  - name: app\n    endpoints: [{{ address: \"127.0.0.1:1\", metadata: {{ zone: z1, group: g1 }} }}]\n    lb: {lb}\n    extensions: {extensions}\n"
        )],
    )
}

/// The error of building `yaml`, as text.
fn error(yaml: &str) -> String {
    let config = Config::from_yaml(yaml).unwrap();
    match Snapshot::build(config, &registry(), None) {
        Ok(_) => "<accepted>".into(),
        Err(e) => e.to_string(),
    }
}

fn lb(lb: &str) -> String {
    error(&config("[]", lb, "[]"))
}

fn filter(filter: &str) -> String {
    error(&config(&format!("[{filter}]"), "round_robin", "[]"))
}

fn extension(extension: &str) -> String {
    error(&config("[]", "round_robin", &format!("[{extension}]")))
}

#[test]
fn good_sections_are_accepted() {
    assert_eq!(lb("{typed: maglev, config: {hash_policy: [{header: {name: x-user-id}}, {cookie: {name: session}}, {query_parameter: {name: uid}}, {rpc: {include_method: false}}, source_ip]}}"), "<accepted>");
    assert_eq!(lb("{typed: zone_aware, config: {inner: {typed: ring_hash, config: {hash_policy: [source_ip]}}, fallback: any}}"), "<accepted>");
    assert_eq!(filter("{typed: traffic_steering, config: {rules: [{match: {headers: [{name: type, value: {exact: transfer}}], rpc: {service: {exact: a.B}, method: {prefix: get}}}, to: {group: g1}}]}}"), "<accepted>");
    assert_eq!(filter("{typed: zone_routing, config: {local_data_centre: dc1, local_cluster: app, zones: [{name: z1, data_centre: dc1, city: hz}], uid: {source: {cookie: uid}, ranges: [{from: 0, to: 100, zone: z1}]}}}"), "<accepted>");
    assert_eq!(extension("{typed: outlier_detection, config: {consecutive_5xx: 5, max_ejection_percent: 12.5, success_rate: {stdev_factor: 1.9}}}"), "<accepted>");
    assert_eq!(
        extension("{typed: health_check, config: {probe: tcp}}"),
        "<accepted>"
    );
}

#[test]
fn balancers_name_the_field() {
    assert_eq!(
        lb("{typed: random, config: {bogus: 1}}"),
        "clusters[0].lb.config.bogus: unknown field `bogus`, there are no fields"
    );
    assert!(lb("{typed: round_robin, config: {weights: [1]}}")
        .starts_with("clusters[0].lb.config.weights: unknown field"));
    assert_eq!(
        lb("{typed: least_request, config: {choice_count: 17}}"),
        "clusters[0].lb.config.choice_count: 17 is outside 2..=16"
    );
    assert_eq!(
        lb("{typed: ring_hash, config: {hash_policy: [source_ip], min_ring_size: 0}}"),
        "clusters[0].lb.config.min_ring_size: must be at least 1"
    );
    assert_eq!(
        lb("{typed: maglev, config: {table_size: 65536, hash_policy: [source_ip]}}"),
        "clusters[0].lb.config.table_size: 65536 is not prime"
    );
    assert_eq!(
        lb("{typed: maglev, config: {hash_policy: [source_ip, {cookie: {name: \"a b\"}}]}}"),
        "clusters[0].lb.config.hash_policy[1].cookie.name: \"a b\" is not a valid cookie name"
    );
    assert!(
        lb("{typed: maglev, config: {hash_policy: [{header: {name: \"bad name\"}}]}}")
            .starts_with("clusters[0].lb.config.hash_policy[0].header.name: ")
    );
    assert_eq!(
        lb("{typed: subset, config: {group_label: \"\"}}"),
        "clusters[0].lb.config.group_label: must not be empty"
    );
    assert_eq!(
        lb("{typed: zone_aware, config: {inner: {typed: maglev, config: {hash_policy: []}}}}"),
        "clusters[0].lb.config.inner.config.hash_policy: must list at least one key source (header, cookie, query_parameter, source_ip, rpc)"
    );
}

#[test]
fn filters_name_the_field() {
    assert_eq!(
        filter("{typed: traffic_steering, config: {rules: [{match: {}, to: {group: g1}}, {match: {path: {exact: x}}, to: {group: g1}}]}}"),
        "listeners[0].http_filters[0].config.rules[1].match.path.exact: \"x\" must start with /"
    );
    assert!(filter("{typed: traffic_steering, config: {rules: [{match: {rpc: {method: {regex: \"(\"}}}, to: {group: g1}}]}}")
        .starts_with("listeners[0].http_filters[0].config.rules[0].match.rpc.method.regex: "));
    assert_eq!(
        filter("{typed: zone_routing, config: {local_data_centre: dc1, local_cluster: app, zones: [{name: z1, data_centre: dc1, city: hz}], uid: {source: {header: x-uid}, modulus: 10, ranges: [{from: 0, to: 11, zone: z1}]}}}"),
        "listeners[0].http_filters[0].config.uid.ranges[0].to: 11 is beyond the modulus 10"
    );
}

#[test]
fn extensions_name_the_field() {
    assert_eq!(
        extension("{typed: outlier_detection, config: {consecutive_5xx: 5, failure_percentage: {threshold_percent: 101}}}"),
        "clusters[0].extensions[0].config.failure_percentage.threshold_percent: 101 is not a percentage from 0 to 100"
    );
    assert_eq!(
        extension("{typed: outlier_detection, config: {consecutive_5xx: 5, readmission: {probe: {http: {expected_statuses: [99]}}}}}"),
        "clusters[0].extensions[0].config.readmission.probe.http.expected_statuses[0]: 99 is not an HTTP status"
    );
    assert_eq!(
        extension("{typed: health_check, config: {timeout: 0s}}"),
        "clusters[0].extensions[0].config.timeout: must be above zero"
    );
}
