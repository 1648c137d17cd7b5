use proxy_core::config::{Config, Section};

use super::QuicSection;

fn section(json: serde_json::Value) -> Section {
    Section::from_value(json)
}

fn h3(extra: serde_json::Value) -> serde_json::Value {
    let mut base = serde_json::json!({
        "serves": "web", "address": "127.0.0.1:8443",
        "certificate": {"cert": "server.pem", "key": "server.key"}});
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    serde_json::json!({ "h3": [base] })
}

fn err(json: serde_json::Value) -> String {
    QuicSection::from_section(&section(json))
        .expect_err("refused")
        .to_string()
}

#[test]
fn defaults_and_name() {
    let s = QuicSection::from_section(&section(h3(serde_json::json!({})))).expect("parses");
    let l = &s.h3[0];
    assert_eq!(l.listener_name(), "web-h3");
    assert_eq!(l.max_concurrent_streams, 100);
    assert_eq!(l.idle_timeout, std::time::Duration::from_secs(60));
    assert_eq!(l.quic_lb, None);
}

#[test]
fn errors_name_the_field() {
    assert!(err(h3(serde_json::json!({"bogus": 1}))).starts_with("quic.h3[0]"));
    assert!(err(h3(serde_json::json!({"max_concurrent_streams": 0})))
        .starts_with("quic.h3[0].max_concurrent_streams:"));
    assert!(err(h3(serde_json::json!({"certificate": {"secret": "s"}})))
        .starts_with("quic.h3[0].certificate:"));
    assert!(err(h3(
        serde_json::json!({"quic_lb": {"config_id": 9, "server_id": "01", "nonce_length": 5}})
    ))
    .starts_with("quic.h3[0].quic_lb"));
    assert!(err(h3(
        serde_json::json!({"address": "127.0.0.1:0", "alt_svc": {}})
    ))
    .starts_with("quic.h3[0].alt_svc:"));
    let two = serde_json::json!({"h3": [
        {"serves": "web", "address": "127.0.0.1:1", "certificate": {"cert": "c", "key": "k"}},
        {"serves": "web", "address": "127.0.0.1:2", "certificate": {"cert": "c", "key": "k"}}]});
    assert!(err(two).starts_with("quic.h3[1].name:"));
}

const CONFIG: &str = "listeners:\n  - name: web\n    address: 127.0.0.1:0\n    virtual_hosts:\n      - name: all\n        domains: [\"*\"]\n        routes: [{match: {path: {prefix: /}}, cluster: app}]\nclusters: [{name: app, endpoints: []}]\n";

#[test]
fn prepare_checks_serves_and_loads_certificates() {
    let dir = std::env::temp_dir().join(format!("quic-section-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    std::fs::write(dir.join("server.pem"), cert.cert.pem()).expect("write");
    std::fs::write(dir.join("server.key"), cert.key_pair.serialize_pem()).expect("write");
    let mut config = Config::from_yaml(CONFIG).expect("config");
    config.base_dir = Some(dir.clone());

    let ok = QuicSection::from_section(&section(h3(serde_json::json!({})))).expect("parses");
    assert_eq!(ok.prepare(&config).expect("prepared").len(), 1);

    let other = QuicSection::from_section(&section(h3(serde_json::json!({"serves": "api"}))))
        .expect("parses");
    let e = other.prepare(&config).expect_err("no api listener");
    assert_eq!(e.path, "quic.h3[0].serves");

    let missing = h3(serde_json::json!({"certificate": {"cert": "none.pem", "key": "server.key"}}));
    let e = QuicSection::from_section(&section(missing))
        .expect("parses")
        .prepare(&config)
        .expect_err("no file");
    assert_eq!(e.path, "quic.h3[0].certificate.cert");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn alt_svc_is_added_to_the_served_listeners_routes() {
    let mut config = Config::from_yaml(CONFIG).expect("config");
    let s = QuicSection::from_section(&section(h3(
        serde_json::json!({"alt_svc": {"max_age": "1h"}}),
    )))
    .expect("parses");
    s.advertise(&mut config);
    s.advertise(&mut config);
    let added = &config.listeners[0].virtual_hosts[0].routes[0].response_headers_to_add;
    assert_eq!(added.len(), 1, "added once");
    assert_eq!(added[0].name, "alt-svc");
    assert_eq!(added[0].value, "h3=\":8443\"; ma=3600");
}
