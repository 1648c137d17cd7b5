//! Header rewriting through a real proxy: request headers removed, rewritten, set
//! and appended before the upstream sees them; response headers likewise before the
//! client does; bad values refused naming the field.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use common::{config, listener, start, try_start, upstream};
use proxy_test_support::{client::get, closed_port, with_timeout};

#[tokio::test]
async fn request_and_response_headers_are_rewritten() {
    with_timeout(Duration::from_secs(30), async {
        let up = upstream("backend", Duration::ZERO);
        let rules = r#"{
          request: {
            remove: [x-internal],
            rewrite: [
              {name: x-user, regex: 'user-(\d+)', replacement: 'id=$1'},
              {name: x-trace, regex: 'abc', replacement: 'zzz'}
            ],
            set: [{name: x-env, value: prod}],
            append: [{name: x-tag, value: proxied}]
          },
          response: {
            remove: [x-remove-me],
            set: [{name: x-upstream, value: hidden}],
            append: [{name: x-served-by, value: edge}]
          }
        }"#;
        let proxy = start(&config(
            &[listener(
                "edge",
                &format!("[{{typed: header_rewrite, config: {rules}}}]"),
                "b",
            )],
            &[("b", up.addr)],
        ));
        let got = get(
            proxy.addr("edge"),
            "/",
            &[
                ("x-internal", "secret"),
                ("x-user", "user-42"),
                ("x-env", "dev"),
                ("x-tag", "client"),
                ("x-trace", "xabcx"),
            ],
        )
        .await;
        assert_eq!(got.status, 200);
        assert!(!got.headers.contains_key("x-remove-me"));
        assert_eq!(got.headers["x-upstream"], "hidden");
        assert_eq!(got.headers["x-served-by"], "edge");
        let seen = &up.requests()[0].headers;
        assert!(!seen.contains_key("x-internal"));
        assert_eq!(seen["x-user"], "id=42");
        assert_eq!(
            seen["x-trace"], "xabcx",
            "a regex matches whole values only"
        );
        assert_eq!(seen["x-env"], "prod");
        let tags: Vec<_> = seen.get_all("x-tag").iter().collect();
        assert_eq!(tags, ["client", "proxied"]);
    })
    .await;
}

#[test]
fn bad_rules_are_refused_naming_the_field() {
    let up = closed_port();
    for (rules, field) in [
        (
            "{request: {set: [{name: 'a b', value: x}]}}",
            "listeners[0].http_filters[0].config.request.set[0].name",
        ),
        (
            "{request: {set: [{name: x-a, value: \"bad\\nvalue\"}]}}",
            "listeners[0].http_filters[0].config.request.set[0].value",
        ),
        (
            "{response: {rewrite: [{name: x-a, regex: '(', replacement: ''}]}}",
            "listeners[0].http_filters[0].config.response.rewrite[0].regex",
        ),
        ("{request: {drop: [x-a]}}", "drop"),
    ] {
        let filters = format!("[{{typed: header_rewrite, config: {rules}}}]");
        let err = try_start(&config(&[listener("e", &filters, "b")], &[("b", up)]))
            .err()
            .unwrap_or_else(|| panic!("{rules} accepted"));
        assert!(err.contains(field), "{rules}: {err}");
    }
}
