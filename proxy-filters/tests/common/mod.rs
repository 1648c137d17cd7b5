//! What the socket tests of this crate share beyond `proxy-test-support`: a registry
//! with this crate's filters, an upstream answering its name, and the YAML of a
//! listener with HTTP filters.

// Test helpers: a failed setup should stop the test loudly.
#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use std::{net::SocketAddr, time::Duration};

use proxy_core::Registry;
use proxy_test_support::{upstream::response, yaml, TestServer, Upstream};

/// A registry with this crate's filters.
pub fn registry() -> Registry {
    let mut r = Registry::default();
    proxy_filters::register(&mut r);
    r
}

/// An upstream (HTTP/1.1 and h2c) recording what it sees and answering 200 with
/// `name` as body, `x-upstream: name` and `x-remove-me: 1`, after `delay`.
pub fn upstream(name: &'static str, delay: Duration) -> Upstream {
    Upstream::http_async(move |_| async move {
        tokio::time::sleep(delay).await;
        let mut resp = response(200, name);
        let headers = resp.headers_mut();
        headers.insert("x-upstream", http::HeaderValue::from_static(name));
        headers.insert("x-remove-me", http::HeaderValue::from_static("1"));
        resp
    })
}

/// A proxy for `yaml` with this crate's filters; panics on a bad config.
pub fn start(yaml: &str) -> TestServer {
    TestServer::start(yaml, registry())
}

/// A proxy for `yaml` with this crate's filters, or the config error text.
pub fn try_start(yaml: &str) -> Result<TestServer, String> {
    TestServer::try_start(yaml, registry())
}

/// A listener `name` on 127.0.0.1:0 routing everything to cluster `cluster`, with
/// `http_filters` (a YAML flow list, e.g. `[{typed: rbac, config: {...}}]`).
pub fn listener(name: &str, http_filters: &str, cluster: &str) -> String {
    yaml::listener(name, cluster, &[&format!("http_filters: {http_filters}")])
}

/// A whole config: `listeners` (from [`listener`]) and clusters by name and address.
pub fn config(listeners: &[String], clusters: &[(&str, SocketAddr)]) -> String {
    let clusters: Vec<String> = clusters
        .iter()
        .map(|(name, addr)| yaml::cluster(name, &[addr], &[]))
        .collect();
    yaml::config(listeners, &clusters)
}
