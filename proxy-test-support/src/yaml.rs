//! The YAML of the config shapes most tests use: a listener on `127.0.0.1:0` sending
//! everything to one cluster, a cluster of endpoints, a document of both.
//!
//! ```
//! use proxy_test_support::yaml;
//!
//! let doc = yaml::config(
//!     &[yaml::listener("main", "app", &["http_filters: [{typed: fault}]"])],
//!     &[yaml::cluster("app", &["127.0.0.1:8080"], &["lb: round_robin"])],
//! );
//! assert!(doc.contains("    http_filters: [{typed: fault}]\n"));
//! proxy_core::config::Config::from_yaml(&doc).unwrap();
//! ```

use std::fmt::Display;

/// A listener `name` on `127.0.0.1:0` with a catch-all virtual host whose one route,
/// `<name>-route`, sends every path to `cluster`; `extra` are more keys of the
/// listener, one `key: value` each (`http_filters: [...]`, `protocol: http1`).
pub fn listener(name: &str, cluster: &str, extra: &[&str]) -> String {
    let mut y = format!("  - name: {name}\n    address: 127.0.0.1:0\n");
    for line in extra {
        y.push_str(&format!("    {line}\n"));
    }
    y.push_str(&format!(
        r#"    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - name: {name}-route
            match: {{ path: {{ prefix: "/" }} }}
            cluster: {cluster}
"#
    ));
    y
}

/// A cluster `name` of `endpoints`; `extra` are more keys of the cluster, one
/// `key: value` each (`lb: maglev`, `protocol: bolt`).
pub fn cluster(name: &str, endpoints: &[impl Display], extra: &[&str]) -> String {
    let endpoints: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    let mut y = format!(
        "  - name: {name}\n    endpoints: [{}]\n",
        endpoints.join(", ")
    );
    for line in extra {
        y.push_str(&format!("    {line}\n"));
    }
    y
}

/// A document of `listeners` ([`listener`]) and `clusters` ([`cluster`]), on one
/// worker thread.
pub fn config(listeners: &[String], clusters: &[String]) -> String {
    let list = |items: &[String]| {
        if items.is_empty() {
            " []\n".to_owned()
        } else {
            format!("\n{}", items.concat())
        }
    };
    format!(
        "runtime: {{ worker_threads: 1 }}\nlisteners:{}clusters:{}",
        list(listeners),
        list(clusters)
    )
}
