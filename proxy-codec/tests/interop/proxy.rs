//! The proxy run in-process with `proxy_codec::register`, and the YAML of its
//! listeners, routes and clusters.

use proxy_core::Registry;
use proxy_test_support::{yaml, TestServer};

/// The proxy, run in-process on its own thread with the codec registered; shut down
/// on drop.
pub(crate) fn start(yaml: &str) -> TestServer {
    let mut registry = Registry::default();
    proxy_codec::register(&mut registry);
    TestServer::start(yaml, registry)
}

/// One route: requests whose path starts with `/<service>` go to `cluster`.
pub(crate) fn route(service: &str, cluster: &str) -> String {
    format!(
        "          - match: {{ path: {{ prefix: \"/{service}\" }} }}\n            cluster: {cluster}\n"
    )
}

/// A listener named `name` on 127.0.0.1:0 speaking `protocol`, with `routes`.
pub(crate) fn listener(name: &str, protocol: &str, routes: &str) -> String {
    format!(
        "  - name: {name}\n    address: 127.0.0.1:0\n    protocol: {protocol}\n    virtual_hosts:\n      - name: all\n        domains: [\"*\"]\n        routes:\n{routes}"
    )
}

/// A cluster named `name` speaking `protocol` to `endpoints`.
pub(crate) fn cluster(name: &str, protocol: &str, endpoints: &[String]) -> String {
    yaml::cluster(name, endpoints, &[&format!("protocol: {protocol}")])
}

/// A whole config: one worker thread, a short drain (the proxy is dropped at the end
/// of every test, even a failed one), the listeners and clusters given.
pub(crate) fn config(listeners: &[String], clusters: &[String]) -> String {
    format!(
        "runtime:\n  worker_threads: 1\n  drain_timeout: 1s\nlisteners:\n{}clusters:\n{}",
        listeners.concat(),
        clusters.concat()
    )
}

/// One route with a timeout: paths starting with `/<service>` go to `cluster`.
pub(crate) fn route_with_timeout(service: &str, cluster: &str, timeout: &str) -> String {
    format!(
        "          - match: {{ path: {{ prefix: \"/{service}\" }} }}\n            cluster: {cluster}\n            timeout: {timeout}\n"
    )
}

/// One route on a whole-path regular expression.
pub(crate) fn route_regex(regex: &str, cluster: &str) -> String {
    format!(
        "          - match: {{ path: {{ regex: '{regex}' }} }}\n            cluster: {cluster}\n"
    )
}
