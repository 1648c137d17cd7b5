//! Per-route overrides of a listener's HTTP filters (`filter_overrides`), on real
//! sockets: a filter turned off on one route, run with another config on another,
//! turned on where the listener has it `disabled`, by virtual host and by route; and
//! a reload that changes the overrides for the next request.

// Test helpers: a failed setup should stop the test loudly.
#![allow(clippy::unwrap_used)]

use std::{net::SocketAddr, sync::Arc, time::Duration};

use http::{HeaderName, HeaderValue};
use proxy_core::{BoxHttp, HttpRequest, Registry};
use proxy_test_support::{
    client,
    upstream::{response, Upstream},
    TestServer,
};

/// A registry with `tag`: appends `x-tag: <config.value>` to the request.
fn registry() -> Registry {
    let mut r = Registry::default();
    r.register_filter("tag", |cfg, _| {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Tag {
            value: String,
        }
        let Tag { value } = cfg.parse()?;
        let value = HeaderValue::from_str(&value)
            .map_err(|_| proxy_core::ConfigError::new("value", "not a header value"))?;
        Ok(Arc::new(move |inner: BoxHttp| {
            let value = value.clone();
            BoxHttp::new(
                tower::ServiceBuilder::new()
                    .map_request(move |mut req: HttpRequest| {
                        req.headers_mut()
                            .append(HeaderName::from_static("x-tag"), value.clone());
                        req
                    })
                    .service(inner),
            )
        }))
    });
    r
}

/// An upstream answering with the `x-tag` values it received, comma-separated.
fn echo_tags() -> Upstream {
    Upstream::http(|seen| {
        let tags: Vec<&str> = seen
            .headers
            .get_all("x-tag")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        response(200, tags.join(","))
    })
}

fn yaml(up: SocketAddr, admin_override: &str) -> String {
    format!(
        r#"
listeners:
  - name: main
    address: 127.0.0.1:0
    http_filters:
      - {{typed: tag, name: a, config: {{value: a}}}}
      - {{typed: tag, name: b, config: {{value: b}}}}
      - {{typed: tag, name: c, disabled: true, config: {{value: c}}}}
    virtual_hosts:
      - name: other
        domains: [other.test]
        filter_overrides: {{a: disabled, b: disabled}}
        routes:
          - match: {{path: {{prefix: /b}}}}
            cluster: app
            filter_overrides: {{b: enabled}}
          - {{match: {{}}, cluster: app}}
      - name: all
        domains: ["*"]
        routes:
          - match: {{path: {{prefix: /health}}}}
            cluster: app
            filter_overrides: {{a: disabled}}
          - match: {{path: {{prefix: /admin}}}}
            cluster: app
            filter_overrides: {admin_override}
          - match: {{path: {{prefix: /debug}}}}
            cluster: app
            filter_overrides: {{c: {{config: {{value: c2}}}}}}
          - {{match: {{}}, cluster: app}}
clusters:
  - name: app
    endpoints: [{{address: {up}}}]
    connect_timeout: 500ms
"#
    )
}

async fn tags(addr: SocketAddr, path: &str, host: Option<&str>) -> String {
    let headers: Vec<(&str, &str)> = host.map(|h| ("host", h)).into_iter().collect();
    let resp = client::get(addr, path, &headers).await;
    assert_eq!(resp.status, 200, "{path}: {resp:?}");
    String::from_utf8(resp.body.to_vec()).unwrap()
}

#[tokio::test]
async fn routes_turn_off_replace_and_turn_on_listener_filters() {
    let up = echo_tags();
    let proxy = TestServer::start(
        &yaml(up.addr, "{b: {config: {value: b2}}, c: enabled}"),
        registry(),
    );
    let addr = proxy.addr("main");
    tokio::time::timeout(Duration::from_secs(20), async {
        // No override: the listener's filters as configured, `c` off.
        assert_eq!(tags(addr, "/", None).await, "a,b");
        // `a` off on this route only.
        assert_eq!(tags(addr, "/health", None).await, "b");
        // `b` with another config, `c` on with the listener's: in the listener's order.
        assert_eq!(tags(addr, "/admin", None).await, "a,b2,c");
        // A disabled filter turned on with a config of its own.
        assert_eq!(tags(addr, "/debug", None).await, "a,b,c2");
        // The virtual host turns `a` and `b` off; one route turns `b` back on.
        assert_eq!(tags(addr, "/x", Some("other.test")).await, "");
        assert_eq!(tags(addr, "/b", Some("other.test")).await, "b");

        // A reload changes the route's stack for the next request.
        proxy
            .reload(&yaml(up.addr, "{a: disabled, b: disabled}"))
            .unwrap();
        assert_eq!(tags(addr, "/admin", None).await, "");
        assert_eq!(tags(addr, "/health", None).await, "b");
    })
    .await
    .expect("the test finishes in time");
}

#[test]
fn bad_overrides_are_refused_naming_the_field() {
    let up: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let err = |admin: &str| TestServer::try_start(&yaml(up, admin), registry()).unwrap_err();
    let e = err("{jwt: disabled}");
    assert!(
        e.contains(
            "listeners[0].virtual_hosts[1].routes[1].filter_overrides.jwt: no listener filter of that name"
        ),
        "{e}"
    );
    let e = err("{b: {config: {value: b2, extra: 1}}}");
    assert!(
        e.contains("listeners[0].virtual_hosts[1].routes[1].filter_overrides.b.config"),
        "{e}"
    );
    let e = err("{b: off}");
    assert!(e.contains("expected disabled, enabled"), "{e}");

    // Two entries of one filter need names of their own.
    let dup = yaml(up, "{a: disabled}").replace("name: b, ", "name: a, ");
    let e = TestServer::try_start(&dup, registry()).unwrap_err();
    assert!(
        e.contains("listeners[0].http_filters[1].name: duplicate filter name \"a\""),
        "{e}"
    );
    // Unnamed entries are named by their `typed` name.
    let dup = yaml(up, "{a: disabled}")
        .replace("name: a, ", "")
        .replace("name: b, ", "");
    let e = TestServer::try_start(&dup, registry()).unwrap_err();
    assert!(
        e.contains("listeners[0].http_filters[1].name: duplicate filter name \"tag\""),
        "{e}"
    );
}
