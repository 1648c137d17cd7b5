//! Config sections loaded the way the proxy loads a config (`Config::from_yaml`, then
//! `Snapshot::build` with this crate registered): one bad value in each section names
//! the full field path from the document root, in core's one format; the same mistake
//! made in code names the same field; the README's YAML builds.

#![allow(clippy::unwrap_used)]

use proxy_core::{config::Config, snapshot::Snapshot, ConfigError, Registry};

fn registry() -> Registry {
    let mut r = Registry::default();
    proxy_filters::register(&mut r);
    r
}

/// The error of a config whose one listener has `network_filters` and
/// `http_filters` (YAML flow lists) and whose route has `route_filters`.
fn error(network_filters: &str, http_filters: &str, route_filters: &str) -> ConfigError {
    let yaml = format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    network_filters: {network_filters}
    http_filters: {http_filters}
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {{ path: {{ prefix: "/" }} }}
            cluster: app
            filters: {route_filters}
clusters:
  - name: app
    endpoints: ["127.0.0.1:9"]
"#
    );
    let config = Config::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}"));
    match Snapshot::build(config, &registry(), None) {
        Ok(_) => panic!("accepted: {network_filters} {http_filters} {route_filters}"),
        Err(e) => e,
    }
}

#[test]
fn each_section_names_the_full_path() {
    const NET: &str = "listeners[0].network_filters[0].config";
    const HTTP: &str = "listeners[0].http_filters[0].config";
    let network = [
        (
            "{typed: tcp_proxy, config: {cluster: app, idle_timeout: 0s}}",
            "idle_timeout",
            "must be above zero",
        ),
        (
            "{typed: connection_limit, config: {max_per_source_ip: -1}}",
            "max_per_source_ip",
            "invalid value",
        ),
        (
            "{typed: connection_fault, config: {delay: {duration: 1s, delay_percent: 200}}}",
            "delay.delay_percent",
            "200 is not a percentage from 0 to 100",
        ),
    ];
    for (filter, path, reason) in network {
        let e = error(&format!("[{filter}]"), "[]", "[]");
        assert_eq!(e.path, format!("{NET}.{path}"), "{filter}: {e}");
        assert!(e.reason.contains(reason), "{filter}: {e}");
    }
    let http = [
        (
            "{typed: fault, config: {abort: {status: 99}}}",
            "abort.status",
            "99 is not a status from 200 to 599",
        ),
        (
            "{typed: mirror, config: {cluster: app, max_body_bytes: 12 parsecs}}",
            "max_body_bytes",
            "is not a size",
        ),
        (
            "{typed: rbac, config: {policies: [{name: a, action: allow, principals: [{source_ip: 1.2.3.4/40}], permissions: [{any: true}]}]}}",
            "policies[0].principals[0].source_ip",
            "\"1.2.3.4/40\" is not a valid CIDR",
        ),
        (
            "{typed: header_rewrite, config: {request: {rewrite: [{name: x-a, regex: 'a)|(b', replacement: ''}]}}}",
            "request.rewrite[0].regex",
            "is not a valid regex",
        ),
        (
            "{typed: access_log, config: {format: {text: '%BOGUS%'}}}",
            "format.text",
            "unknown field %BOGUS%",
        ),
        (
            "{typed: local_rate_limit, config: {descriptors: [{key: {header: x-k}, rate: {requests: 1, per: 1s}, max_keys: 0}]}}",
            "descriptors[0].max_keys",
            "invalid value",
        ),
        (
            "{typed: adaptive_concurrency, config: {cost: {high_cost_limit_percent: 0}}}",
            "cost.high_cost_limit_percent",
            "must be above 0",
        ),
    ];
    for (filter, path, reason) in http {
        let e = error("[]", &format!("[{filter}]"), "[]");
        assert_eq!(e.path, format!("{HTTP}.{path}"), "{filter}: {e}");
        assert!(e.reason.contains(reason), "{filter}: {e}");
        assert_eq!(e.to_string(), format!("{HTTP}.{path}: {}", e.reason));
    }
    // A route's own filter: the route's path.
    let e = error(
        "[]",
        "[]",
        "[{typed: local_rate_limit, config: {rate: {requests: 0, per: 1s}}}]",
    );
    assert_eq!(
        e.path, "listeners[0].virtual_hosts[0].routes[0].filters[0].config.rate.requests",
        "{e}"
    );
    // A section that is not a mapping names the section itself.
    let e = error("[]", "[{typed: fault, config: 5}]", "[]");
    assert_eq!(e.path, HTTP, "{e}");
}

#[test]
fn code_names_the_same_fields() {
    use proxy_filters::{
        fault::{AbortConfig, FaultConfig, FaultLayer},
        rbac::{Permission, Policy, Principal, RbacConfig, RbacLayer, RpcMatch},
    };
    let cfg = FaultConfig {
        abort: Some(AbortConfig {
            status: 99,
            abort_percent: proxy_core::config::Percent::HUNDRED,
        }),
        ..Default::default()
    };
    let e = FaultLayer::try_from(&cfg).unwrap_err();
    assert_eq!(e.field(), "abort.status");
    let core: ConfigError = e.into();
    assert_eq!(
        core.within("listeners[0].http_filters[0].config")
            .to_string(),
        "listeners[0].http_filters[0].config.abort.status: 99 is not a status from 200 to 599"
    );
    let cfg = RbacConfig {
        policies: vec![Policy {
            name: "p".into(),
            action: proxy_filters::rbac::Action::Allow,
            principals: vec![Principal::Any(true)],
            permissions: vec![Permission::Or(vec![
                Permission::Any(true),
                Permission::Rpc(RpcMatch::default()),
            ])],
        }],
        ..Default::default()
    };
    let e = RbacLayer::try_from(&cfg).unwrap_err();
    assert_eq!(e.field(), "policies[0].permissions[0].or[1].rpc", "{e}");
}

/// Every YAML block of the README builds: whole documents as they are, lists of
/// filters inside a listener.
#[test]
fn readme_yaml_builds() {
    let readme = include_str!("../README.md");
    let dir = std::env::temp_dir().join(format!("proxy-filters-readme-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let clusters = "clusters:\n  - { name: shadow, endpoints: [\"127.0.0.1:9\"] }\n  \
                    - { name: postgres, endpoints: [\"127.0.0.1:9\"] }\n  \
                    - { name: app, endpoints: [\"127.0.0.1:9\"] }\n";
    let blocks: Vec<&str> = readme
        .split("```yaml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    assert!(blocks.len() >= 3, "{}", blocks.len());
    for block in blocks {
        let yaml = if block.starts_with("listeners:") {
            format!("{block}{clusters}")
        } else {
            let indented: String = block.lines().map(|l| format!("    {l}\n")).collect();
            format!(
                "listeners:\n  - name: l\n    address: 127.0.0.1:0\n    virtual_hosts: []\n{indented}{clusters}"
            )
        };
        let mut config = Config::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        config.base_dir = Some(dir.clone());
        if let Err(e) = Snapshot::build(config, &registry(), None) {
            panic!("{e}\n{yaml}");
        }
    }
    assert!(
        !dir.join("logs/access.log").exists(),
        "building opened the log"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
