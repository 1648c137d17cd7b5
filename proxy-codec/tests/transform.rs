//! The `json_to_rpc` filter end to end on real sockets: an HTTP client POSTs JSON to
//! the proxy (in-process, `proxy_codec::register`), whose route sends the call to
//! the real sofa-rpc-node server, over Bolt (sofa-bolt-node) and over Dubbo
//! (js-remoting-for-apache-dubbo), and gets the answer back as JSON. The peers are
//! the interop tests' (`interop/peers.rs`, `interop/proxy.rs`, shared, not copied);
//! without them (`scripts/deps/proxy-codec.sh`) each test prints `SKIPPED:` and
//! passes.

#![allow(clippy::unwrap_used)]

use crate::peers;
use crate::proxy;

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use proxy_test_support::{client, TestServer};
use serde_json::{json, Value};

use self::{
    peers::{Node, NodeServer},
    proxy::{cluster, config, start},
};

const LIMIT: Duration = Duration::from_secs(60);
const ECHO: &str = "com.example.EchoService";

/// One HTTP route per method, each with its own `json_to_rpc` filter.
struct Api<'a> {
    path: &'a str,
    method: &'a str,
    arguments: &'a str,
}

/// A proxy with an HTTP listener `api` whose routes turn JSON into `protocol` calls
/// of the echo service on `server`.
fn proxy_for(protocol: &str, server: &NodeServer, apis: &[Api<'_>]) -> TestServer {
    // sofa-rpc-node's Bolt server reads the hessian.js 1.x dialect only.
    let dialect = if protocol == "bolt" { "draft" } else { "final" };
    let mut routes = String::new();
    for api in apis {
        routes += &format!(
            "          - match: {{ path: {{ exact: \"{path}\" }} }}\n            cluster: rpc\n            filters:\n              - typed: json_to_rpc\n                config: {{ protocol: {protocol}, service: {ECHO}, version: \"1.0\", method: {method}, dialect: {dialect}, arguments: {args} }}\n",
            path = api.path,
            method = api.method,
            args = api.arguments,
        );
    }
    let listener = format!(
        "  - name: api\n    address: 127.0.0.1:0\n    virtual_hosts:\n      - name: all\n        domains: [\"*\"]\n        routes:\n{routes}"
    );
    start(&config(
        &[listener],
        &[cluster("rpc", protocol, &[server.addr()])],
    ))
}

async fn post(proxy: &TestServer, path: &str, body: &str) -> (u16, Option<String>, Value) {
    let resp = client::request(
        proxy.addr("api"),
        Method::POST,
        path,
        &[("content-type", "application/json")],
        Bytes::from(body.to_owned()),
    )
    .await
    .unwrap();
    assert_eq!(
        resp.header("content-type"),
        Some("application/json"),
        "{path}: {}",
        resp.text()
    );
    let json = serde_json::from_slice(&resp.body)
        .unwrap_or_else(|e| panic!("{path}: {e}: {}", resp.text()));
    (
        resp.status.as_u16(),
        resp.header("x-proxy-error").map(str::to_owned),
        json,
    )
}

fn apis() -> Vec<Api<'static>> {
    vec![
        Api {
            path: "/api/echo",
            method: "echo",
            arguments: "[{type: java.lang.String}]",
        },
        Api {
            path: "/api/echo-map",
            method: "echo",
            arguments: "[{type: java.util.Map}]",
        },
        Api {
            path: "/api/echo-user",
            method: "echo",
            arguments: "[{type: com.example.User, fields: [{name: name, type: java.lang.String}, {name: age, type: int}, {name: tags, type: java.util.List}]}]",
        },
        Api {
            path: "/api/echo-after",
            method: "echoAfter",
            arguments: "[{name: text, type: java.lang.String}, {name: ms, type: int}]",
        },
        Api {
            path: "/api/fail",
            method: "fail",
            arguments: "[{type: java.lang.String}]",
        },
    ]
}

/// An in-process Bolt server that records what it receives and answers plain text:
/// the call reaches it as a SOFARPC call (service and method in the header map, a
/// hessian2 `SofaRequest` content, none of the HTTP headers), and its unreadable
/// answer is a JSON 502. Wrong method and oversized bodies are refused locally.
/// Each outcome is counted on the admin page.
#[tokio::test]
async fn call_on_the_wire_and_local_refusals() {
    tokio::time::timeout(LIMIT, async {
        let upstream = proxy_test_support::rpc::upstream(proxy_codec::Bolt, "raw");
        let routes = format!(
            "          - match: {{ path: {{ prefix: \"/\" }} }}\n            cluster: rpc\n            filters:\n              - typed: json_to_rpc\n                config: {{ protocol: bolt, service: {ECHO}, version: \"1.0\", method: echo, max_body_bytes: 64, arguments: [{{type: java.lang.String}}] }}\n"
        );
        let listener = format!(
            "  - name: api\n    address: 127.0.0.1:0\n    virtual_hosts:\n      - name: all\n        domains: [\"*\"]\n        routes:\n{routes}"
        );
        let admin = proxy_test_support::ports::free_addr();
        let proxy = start(&format!(
            "admin: {{ address: \"{admin}\" }}\n{}",
            config(
                &[listener],
                &[cluster("rpc", "bolt", &[upstream.addr.to_string()])],
            )
        ));

        let (status, reason, v) = post(&proxy, "/anything", r#"["wire"]"#).await;
        assert_eq!((status, reason.as_deref()), (502, Some("bad_rpc_response")), "{v}");
        let seen = upstream.requests();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].uri.path(), "/com.example.EchoService:1.0/echo");
        assert_eq!(seen[0].headers["sofa_head_method_name"], "echo");
        assert!(seen[0].headers.get("content-type").is_none(), "{:?}", seen[0].headers);
        let mut d = proxy_codec::transform::Decoder::new(&seen[0].body, false);
        let (class, _) = d.read_object().unwrap();
        assert_eq!(class, proxy_codec::bolt::SOFA_REQUEST);
        assert_eq!(d.read().unwrap().value, "wire");

        let big = json!(["x".repeat(100)]).to_string();
        let (status, reason, _) = post(&proxy, "/anything", &big).await;
        assert_eq!((status, reason.as_deref()), (413, Some("body_too_large")));
        let resp = client::get(proxy.addr("api"), "/anything", &[]).await;
        assert_eq!(resp.status, 405);
        assert_eq!(resp.header("allow"), Some("POST"));
        assert_eq!(upstream.requests().len(), 1, "refused calls reached the server");
        let (_, stats) = proxy.admin_get("/stats/prometheus").await;
        for (outcome, n) in [("bad_rpc_response", 1), ("body_too_large", 1), ("method_not_allowed", 1), ("ok", 0)] {
            let line = format!("proxy_codec_json_to_rpc_total{{protocol=\"bolt\",outcome=\"{outcome}\"}} {n}\n");
            assert!(stats.contains(&line), "{line} in\n{stats}");
        }
    })
    .await
    .expect("test timed out");
}

/// The YAML adapter refuses a bad signature at load, naming the field.
#[test]
fn yaml_errors_name_the_field() {
    let mut registry = proxy_core::Registry::default();
    proxy_codec::register(&mut registry);
    let yaml = |args: &str| {
        config(
            &[format!(
                "  - name: api\n    address: 127.0.0.1:0\n    virtual_hosts:\n      - name: all\n        domains: [\"*\"]\n        routes:\n          - match: {{ path: {{ prefix: / }} }}\n            cluster: rpc\n            filters: [{{typed: json_to_rpc, config: {{protocol: dubbo, service: org.example.S, method: m, arguments: {args}}}}}]\n"
            )],
            &[cluster("rpc", "dubbo", &["127.0.0.1:1".to_owned()])],
        )
    };
    let err = proxy_test_support::server::load_error(
        &yaml("[{type: int}, {type: \"java.util.Lis t\"}]"),
        registry.clone(),
    )
    .expect("a bad type is refused");
    assert!(err.contains("arguments[1].type"), "{err}");
    let err =
        proxy_test_support::server::load_error(&yaml("[{type: org.example.P}]"), registry.clone())
            .expect("a class without fields is refused");
    assert!(err.contains("arguments[0].fields"), "{err}");
    assert_eq!(
        proxy_test_support::server::load_error(&yaml("[{type: long}]"), registry),
        None
    );
}

/// Calls, a class argument, named arguments, a mismatch and a remote exception,
/// through the proxy to the real server of `protocol`.
async fn transforms_json_calls(protocol: &str, test: &str) {
    let Some(node) = Node::find(test) else { return };
    let server = node.server(protocol, "A", &[]).await;
    let proxy = proxy_for(protocol, &server, &apis());

    let (status, _, v) = post(&proxy, "/api/echo", r#"["héllo, 世界 😀"]"#).await;
    assert_eq!((status, v), (200, json!("héllo, 世界 😀")));

    let long = "x".repeat(70_000);
    let (status, _, v) = post(&proxy, "/api/echo", &json!([long]).to_string()).await;
    assert_eq!((status, v.as_str().map(str::len)), (200, Some(70_000)));

    let map =
        json!({"a": 1, "b": [1, 2.5, "x", null, true], "c": {"d": -70000, "e": 12345678901i64}});
    let (status, _, v) = post(&proxy, "/api/echo-map", &json!([map]).to_string()).await;
    assert_eq!((status, &v), (200, &map));

    let user = json!({"name": "ann", "age": 41, "tags": ["a", "b"]});
    let (status, _, v) = post(&proxy, "/api/echo-user", &json!([user]).to_string()).await;
    assert_eq!((status, &v), (200, &user), "{v}");

    let (status, _, v) = post(&proxy, "/api/echo-after", r#"{"text": "later", "ms": 5}"#).await;
    assert_eq!((status, v), (200, json!("later")));

    // A body that does not fit the signature: 400 naming the argument.
    let (status, reason, v) = post(&proxy, "/api/echo-after", r#"{"text": "x", "ms": "5"}"#).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(reason.as_deref(), Some("bad_rpc_arguments"));
    assert_eq!(v["argument"], "ms");
    assert_eq!(v["expected"], "int");
    let (status, _, v) = post(&proxy, "/api/echo-user", r#"[{"name": "ann", "age": 1.5}]"#).await;
    assert_eq!(
        (status, &v["argument"], &v["expected"]),
        (400, &json!(0), &json!("int")),
        "{v}"
    );
    assert!(v["error"].as_str().unwrap().contains(".age"), "{v}");
    let (status, _, v) = post(&proxy, "/api/echo", r#"["a", "b"]"#).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"], "expected 1 arguments, got 2");
    let (status, _, _) = post(&proxy, "/api/echo", "not json").await;
    assert_eq!(status, 400);

    // A remote exception: 500 with its message.
    let (status, reason, v) = post(&proxy, "/api/fail", r#"["it broke"]"#).await;
    assert_eq!(status, 500, "{v}");
    assert_eq!(reason.as_deref(), Some("rpc_exception"));
    assert!(v["error"].as_str().unwrap().contains("it broke"), "{v}");
}

#[tokio::test]
async fn json_to_bolt_against_sofa_rpc_node() {
    tokio::time::timeout(
        LIMIT,
        transforms_json_calls("bolt", "json_to_bolt_against_sofa_rpc_node"),
    )
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn json_to_dubbo_against_js_remoting_for_apache_dubbo() {
    tokio::time::timeout(
        LIMIT,
        transforms_json_calls(
            "dubbo",
            "json_to_dubbo_against_js_remoting_for_apache_dubbo",
        ),
    )
    .await
    .expect("test timed out");
}

/// The server has no such service: its error comes back as JSON naming the service.
#[tokio::test]
async fn unknown_service_is_a_json_error() {
    let test = "unknown_service_is_a_json_error";
    let Some(node) = Node::find(test) else { return };
    tokio::time::timeout(LIMIT, async {
        for protocol in ["bolt", "dubbo"] {
            let server = node
                .server(protocol, "A", &["--echo-service", "com.example.Elsewhere"])
                .await;
            let proxy = proxy_for(protocol, &server, &apis()[..1]);
            let (status, _, v) = post(&proxy, "/api/echo", r#"["x"]"#).await;
            eprintln!("{protocol}: unknown service answered {status} {v}");
            // sofa-rpc-node reports it as a server exception (500) over both
            // protocols; a Java server answers Dubbo SERVICE_NOT_FOUND (502).
            assert!(status == 500 || status == 502, "{protocol}: {v}");
            let error = v["error"].as_str().unwrap_or_default();
            assert!(error.contains("com.example.EchoService"), "{protocol}: {v}");
        }
    })
    .await
    .expect("test timed out");
}
