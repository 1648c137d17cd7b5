//! Config refused when the table is built: routes, regexes, domains; each error names
//! its field path.

use super::err;

/// The error for a table whose second vhost's second route has the given YAML keys.
fn route_err(extra: &str) -> String {
    let cluster = if extra.contains("cluster:") {
        ""
    } else {
        "cluster: c, "
    };
    err(&format!(
        "- name: ok\n  domains: [ok]\n  routes: [{{ match: {{}}, cluster: c }}]\n\
         - name: v\n  domains: ['*']\n  routes:\n    - {{ match: {{}}, cluster: c }}\n    - {{ {cluster}{extra} }}\n"
    ))
}

#[test]
fn route_validation_errors() {
    let r = "listeners[0].virtual_hosts[1].routes[1]";
    let cases = [
        ("match: { path: { exact: x } }", format!(r#"{r}.match.path.exact: "x" must start with '/'"#)),
        ("match: { path: { prefix: '' } }", format!(r#"{r}.match.path.prefix: "" must start with '/'"#)),
        ("match: { methods: [GET, 'G T'] }", format!(r#"{r}.match.methods[1]: "G T" is not a valid method"#)),
        (
            "match: { headers: [{ name: a }, { name: 'bad name', value: { exact: x } }] }",
            format!(r#"{r}.match.headers[1].name: "bad name" is not a valid header name"#),
        ),
        ("match: {}, cluster: missing", format!(r#"{r}.cluster: unknown cluster "missing""#)),
        ("match: {}, retry: { attempts: 11 }", format!("{r}.retry.attempts: 11 is above the maximum of 10")),
        (
            "match: { path: { exact: /a } }, prefix_rewrite: /b",
            format!("{r}.prefix_rewrite: only allowed on a route with a prefix path match"),
        ),
        ("match: {}, prefix_rewrite: /b", format!("{r}.prefix_rewrite: only allowed on a route with a prefix path match")),
        (
            "match: { path: { prefix: /a } }, prefix_rewrite: b",
            format!(r#"{r}.prefix_rewrite: "b" is not a valid path (it must start with '/' and have no query)"#),
        ),
        (
            "match: { path: { prefix: /a } }, prefix_rewrite: '/b?x=1'",
            format!(r#"{r}.prefix_rewrite: "/b?x=1" is not a valid path (it must start with '/' and have no query)"#),
        ),
        (
            "match: {}, host_rewrite: 'bad host'",
            format!(r#"{r}.host_rewrite: "bad host" is not a valid authority (host[:port])"#),
        ),
        (
            "match: {}, request_headers_to_add: [{ name: ok, value: v }, { name: 'a:b', value: v }]",
            format!(r#"{r}.request_headers_to_add[1].name: "a:b" is not a valid header name"#),
        ),
        (
            r#"match: {}, request_headers_to_add: [{ name: ok, value: "a\rb" }]"#,
            format!(r#"{r}.request_headers_to_add[0].value: "a\rb" is not a valid header value"#),
        ),
        (
            "match: {}, request_headers_to_remove: ['']",
            format!(r#"{r}.request_headers_to_remove[0]: "" is not a valid header name"#),
        ),
        (
            "match: {}, response_headers_to_add: [{ name: 'x y', value: v }]",
            format!(r#"{r}.response_headers_to_add[0].name: "x y" is not a valid header name"#),
        ),
        (
            "match: {}, response_headers_to_remove: [ok, 'é']",
            format!(r#"{r}.response_headers_to_remove[1]: "é" is not a valid header name"#),
        ),
    ];
    for (extra, want) in cases {
        assert_eq!(route_err(extra), want, "{extra}");
    }
}

#[test]
fn regex_validation_errors() {
    let r = "listeners[0].virtual_hosts[1].routes[1]";
    let e = route_err("match: { path: { regex: '(' } }");
    assert!(
        e.starts_with(&format!(
            r#"{r}.match.path.regex: "(" is not a valid regex: "#
        )),
        "{e}"
    );
    // Valid only once wrapped in `^(?:...)$`: refused, it would not be anchored.
    let e = route_err("match: { path: { regex: 'a)|(b' } }");
    assert!(
        e.starts_with(&format!(
            r#"{r}.match.path.regex: "a)|(b" is not a valid regex: "#
        )),
        "{e}"
    );
    let e = route_err(
        "match: { headers: [{ name: a, invert: true }, { name: x, value: { regex: '[z-a]' } }] }",
    );
    assert!(
        e.starts_with(&format!(
            r#"{r}.match.headers[1].value.regex: "[z-a]" is not a valid regex: "#
        )),
        "{e}"
    );
    // A hostile pattern is refused by the size limit, quickly.
    let start = std::time::Instant::now();
    let e = route_err(r"match: { path: { regex: '(\w{100}){100}' } }");
    assert!(e.contains("exceeds the size limit"), "{e}");
    let e =
        route_err(r"match: { headers: [{ name: x, value: { regex: '((a{100}){100}){100}' } }] }");
    assert!(e.contains("exceeds the size limit"), "{e}");
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn domain_validation_errors() {
    let v = |domains: &str| {
        err(&format!(
            "- name: a\n  domains: [a.com, '*.b.com']\n  routes: []\n- name: b\n  domains: {domains}\n  routes: []\n"
        ))
    };
    let d = "listeners[0].virtual_hosts[1].domains";
    assert_eq!(v("['']"), format!("{d}[0]: a domain must not be empty"));
    assert_eq!(v("[]"), format!("{d}: at least one domain is required"));
    let wildcard = "a wildcard is only allowed once, as the first or the last character";
    assert_eq!(
        v("[ok, 'a.*.com']"),
        format!(r#"{d}[1]: "a.*.com": {wildcard}"#)
    );
    assert_eq!(v("['*.a.*']"), format!(r#"{d}[0]: "*.a.*": {wildcard}"#));
    assert_eq!(v("['**']"), format!(r#"{d}[0]: "**": {wildcard}"#));
    assert_eq!(
        v("['a.com:80']"),
        format!(
            r#"{d}[0]: "a.com:80" carries a port; the port of the Host header is ignored, leave it out"#
        )
    );
    assert_eq!(
        v("['a b']"),
        format!(r#"{d}[0]: "a b" is not a valid host name"#)
    );
    assert_eq!(
        v("[x, A.COM]"),
        format!(
            r#"{d}[1]: duplicate domain "A.COM", already declared at listeners[0].virtual_hosts[0].domains[0]"#
        )
    );
    assert_eq!(
        v("['*.B.com']"),
        format!(
            r#"{d}[0]: duplicate domain "*.B.com", already declared at listeners[0].virtual_hosts[0].domains[1]"#
        )
    );
    assert_eq!(
        v("['*', x, '*']"),
        format!(r#"{d}[2]: duplicate domain "*", already declared at {d}[0]"#)
    );
}
