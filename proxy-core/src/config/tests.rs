use super::*;

const GOOD: &str = r#"
listeners:
  - name: web
    address: 127.0.0.1:8080
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match:
              path: { prefix: "/api" }
              methods: [GET]
              headers:
                - { name: x-env, value: { exact: prod } }
                - { name: x-debug, invert: true }
            cluster: app
            timeout: 250ms
            retry: { attempts: 2, retry_on: [5xx, connect_failure], per_try_timeout: 100ms }
clusters:
  - name: app
    protocol: http2
    endpoints: ["127.0.0.1:9000", { address: "127.0.0.1:9001", weight: 3 }]
"#;

#[test]
fn parses_enums_as_one_key_maps() {
    let cfg = Config::from_yaml(GOOD).unwrap();
    let route = &cfg.listeners[0].virtual_hosts[0].routes[0];
    assert_eq!(
        route.matcher.path,
        Some(PathMatchConfig::Prefix("/api".into()))
    );
    assert_eq!(
        route.matcher.headers[0].value,
        Some(crate::matcher::StringMatch::Exact("prod".into()))
    );
    assert!(route.matcher.headers[1].invert);
    assert_eq!(route.timeout, Some(std::time::Duration::from_millis(250)));
    assert_eq!(cfg.clusters[0].endpoints[1].weight().get(), 3);
    assert_eq!(cfg.clusters[0].protocol, UpstreamProtocol::Http2);
}

#[test]
fn round_trips_through_json_dump() {
    let cfg = Config::from_yaml(GOOD).unwrap();
    let json = cfg.to_json();
    let back: Config = serde_json::from_str(&json).unwrap();
    assert_eq!(back, cfg);
}

#[test]
fn errors_name_the_field() {
    let err = Config::from_yaml(&GOOD.replace("timeout: 250ms", "timeout: soon")).unwrap_err();
    assert_eq!(
        err.path, "listeners[0].virtual_hosts[0].routes[0].timeout",
        "{err}"
    );
    let err = Config::from_yaml(&GOOD.replace("protocol: http2", "protocol: \"\"")).unwrap_err();
    assert_eq!(err.path, "clusters[0].protocol", "{err}");
    let err =
        Config::from_yaml(&GOOD.replace("cluster: app", "cluster: app\n            bogus: 1"))
            .unwrap_err();
    assert!(err.to_string().contains("bogus"), "{err}");
    let err = Config::from_yaml(&GOOD.replace("127.0.0.1:8080", "nowhere")).unwrap_err();
    assert_eq!(err.path, "listeners[0].address", "{err}");
    let err = Config::from_yaml(&GOOD.replace("weight: 3", "weight: 0")).unwrap_err();
    assert!(err.path.starts_with("clusters[0].endpoints"), "{err}");
}
