//! Lookups (host, path, method and header matching) and the per-route settings
//! (names, rewrites, header mutations, retry policy) built from config.

use http::{HeaderMap, HeaderValue, Method};

use super::{find, get, headers, one_vhost, route, table};
use crate::{
    config::RetryOn,
    router::{HeaderMutations, Route, RouteTable},
};

#[test]
fn table_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<RouteTable>();
    check::<Route>();
}

#[test]
fn vhost_precedence() {
    let yaml = r#"
- name: exact
  domains: ["a.example.com"]
  routes: [{ match: {}, cluster: c }]
- name: suffix
  domains: ["*.example.com"]
  routes: [{ match: {}, cluster: c }]
- name: long-suffix
  domains: ["*.b.example.com"]
  routes: [{ match: {}, cluster: c }]
- name: prefix
  domains: ["api.*"]
  routes: [{ match: {}, cluster: c }]
- name: long-prefix
  domains: ["api.example.*"]
  routes: [{ match: {}, cluster: c }]
- name: any
  domains: ["*"]
  routes: [{ match: {}, cluster: c }]
"#;
    let t = table(yaml);
    let vhost = |host: Option<&str>| {
        t.find(host, &Method::GET, "/", &HeaderMap::new())
            .map(|r| r.vhost.to_string())
    };
    assert_eq!(vhost(Some("a.example.com")).as_deref(), Some("exact"));
    assert_eq!(vhost(Some("x.example.com")).as_deref(), Some("suffix"));
    assert_eq!(vhost(Some("x.y.example.com")).as_deref(), Some("suffix"));
    assert_eq!(
        vhost(Some("x.b.example.com")).as_deref(),
        Some("long-suffix")
    );
    // A wildcard matches at least one character.
    assert_eq!(vhost(Some("b.example.com")).as_deref(), Some("suffix"));
    assert_eq!(vhost(Some("example.com")).as_deref(), Some("any"));
    assert_eq!(vhost(Some("api.foo")).as_deref(), Some("prefix"));
    assert_eq!(
        vhost(Some("api.example.org")).as_deref(),
        Some("long-prefix")
    );
    assert_eq!(vhost(Some("api.")).as_deref(), Some("any"));
    // Suffix wildcards come before prefix wildcards.
    assert_eq!(vhost(Some("api.example.com")).as_deref(), Some("suffix"));
    assert_eq!(vhost(Some("other.org")).as_deref(), Some("any"));
    assert_eq!(vhost(None).as_deref(), Some("any"));
    assert_eq!(vhost(Some("")).as_deref(), Some("any"));
}

#[test]
fn missing_host_only_matches_any() {
    let t = table(
        r#"
- name: exact
  domains: ["a.example.com", "*.example.com", "api.*"]
  routes: [{ match: {}, cluster: c }]
"#,
    );
    assert!(t.find(None, &Method::GET, "/", &HeaderMap::new()).is_none());
    assert!(t
        .find(Some("other"), &Method::GET, "/", &HeaderMap::new())
        .is_none());
    assert!(t
        .find(Some("a.example.com"), &Method::GET, "/", &HeaderMap::new())
        .is_some());
}

#[test]
fn host_port_and_case() {
    let t = table(
        r#"
- name: a
  domains: ["A.Example.com", "[::1]", "*.Wild.COM"]
  routes: [{ name: a, match: {}, cluster: c }]
"#,
    );
    for host in [
        "a.example.com",
        "A.EXAMPLE.COM",
        "a.example.com:8080",
        "A.Example.Com:1",
        "a.example.com:",
        "[::1]",
        "[::1]:443",
        "X.WILD.com:80",
    ] {
        assert_eq!(get(&t, host, "/").as_deref(), Some("a"), "{host}");
    }
    for host in [
        "a.example.com:http",
        "b.example.com",
        "::1",
        "[::2]:443",
        "wild.com",
    ] {
        assert_eq!(get(&t, host, "/"), None, "{host}");
    }
    // Hosts longer than the stack buffer are lowercased on the heap.
    let long = format!("{}.WILD.COM", "X".repeat(300));
    assert_eq!(get(&t, &long, "/").as_deref(), Some("a"));
}

#[test]
fn path_kinds() {
    let t = one_vhost(
        r#"
    - { name: exact, match: { path: { exact: /exact } }, cluster: c }
    - { name: prefix, match: { path: { prefix: /pre } }, cluster: c }
    - { name: regex, match: { path: { regex: "/items/[0-9]+" } }, cluster: c }
    - { name: unicode, match: { path: { exact: /ünï } }, cluster: c }
"#,
    );
    assert_eq!(get(&t, "h", "/exact").as_deref(), Some("exact"));
    assert_eq!(get(&t, "h", "/exact/"), None);
    assert_eq!(get(&t, "h", "/EXACT"), None);
    assert_eq!(get(&t, "h", "/pre").as_deref(), Some("prefix"));
    assert_eq!(get(&t, "h", "/prefix/x").as_deref(), Some("prefix"));
    assert_eq!(get(&t, "h", "/pr"), None);
    assert_eq!(get(&t, "h", "/items/12").as_deref(), Some("regex"));
    // The regex must match the whole path.
    assert_eq!(get(&t, "h", "/items/12/x"), None);
    assert_eq!(get(&t, "h", "/x/items/12"), None);
    assert_eq!(get(&t, "h", "/ünï").as_deref(), Some("unicode"));
    assert_eq!(get(&t, "h", ""), None);
}

#[test]
fn nested_prefixes_and_trie_splits() {
    let t = one_vhost(
        r#"
    - { name: abc, match: { path: { prefix: /abc } }, cluster: c }
    - { name: abd, match: { path: { prefix: /abd } }, cluster: c }
    - { name: a-b-c, match: { path: { prefix: /a/b/c } }, cluster: c }
    - { name: a-b, match: { path: { prefix: /a/b } }, cluster: c }
    - { name: ab, match: { path: { prefix: /ab } }, cluster: c }
    - { name: a, match: { path: { prefix: /a } }, cluster: c }
    - { name: root, match: { path: { prefix: / } }, cluster: c }
"#,
    );
    assert_eq!(get(&t, "h", "/abcd").as_deref(), Some("abc"));
    assert_eq!(get(&t, "h", "/abd").as_deref(), Some("abd"));
    assert_eq!(get(&t, "h", "/abe").as_deref(), Some("ab"));
    assert_eq!(get(&t, "h", "/a/b/c/d").as_deref(), Some("a-b-c"));
    assert_eq!(get(&t, "h", "/a/b/x").as_deref(), Some("a-b"));
    assert_eq!(get(&t, "h", "/a/x").as_deref(), Some("a"));
    assert_eq!(get(&t, "h", "/b").as_deref(), Some("root"));
    assert_eq!(get(&t, "h", "nope"), None);
}

#[test]
fn methods() {
    let t = one_vhost(
        r#"
    - { name: read, match: { path: { prefix: / }, methods: [GET, HEAD] }, cluster: c }
    - { name: custom, match: { path: { prefix: / }, methods: [PURGE] }, cluster: c }
    - { name: any, match: { path: { prefix: /any } }, cluster: c }
"#,
    );
    let h = HeaderMap::new();
    assert_eq!(
        find(&t, None, Method::GET, "/x", &h).as_deref(),
        Some("read")
    );
    assert_eq!(
        find(&t, None, Method::HEAD, "/x", &h).as_deref(),
        Some("read")
    );
    let purge = Method::from_bytes(b"PURGE").expect("valid method");
    assert_eq!(find(&t, None, purge, "/x", &h).as_deref(), Some("custom"));
    assert_eq!(find(&t, None, Method::POST, "/x", &h), None);
    assert_eq!(
        find(&t, None, Method::POST, "/any/x", &h).as_deref(),
        Some("any")
    );
}

#[test]
fn header_conditions() {
    let t = one_vhost(
        r#"
    - { name: exact, match: { headers: [{ name: X-Env, value: { exact: canary } }] }, cluster: c }
    - { name: prefix, match: { headers: [{ name: x-env, value: { prefix: "stag" } }] }, cluster: c }
    - { name: regex, match: { headers: [{ name: x-user, value: { regex: "[0-9]+" } }] }, cluster: c }
    - { name: present, match: { headers: [{ name: x-debug }] }, cluster: c }
    - name: all
      match:
        headers:
          - { name: x-a, value: { exact: "1" } }
          - { name: x-b, value: { exact: "2" }, invert: true }
          - { name: x-c, invert: true }
      cluster: c
"#,
    );
    let f =
        |pairs: &[(&'static str, &'static str)]| find(&t, None, Method::GET, "/", &headers(pairs));
    assert_eq!(f(&[("x-env", "canary")]).as_deref(), Some("exact"));
    assert_eq!(f(&[("x-env", "canary2")]), None);
    assert_eq!(f(&[("x-env", "staging")]).as_deref(), Some("prefix"));
    // Any value of a repeated header may satisfy a value condition.
    assert_eq!(
        f(&[("x-env", "prod"), ("x-env", "canary")]).as_deref(),
        Some("exact")
    );
    assert_eq!(f(&[("x-user", "123")]).as_deref(), Some("regex"));
    assert_eq!(f(&[("x-user", "123a")]), None);
    assert_eq!(f(&[("x-debug", "")]).as_deref(), Some("present"));
    assert_eq!(f(&[("x-a", "1")]).as_deref(), Some("all"));
    assert_eq!(f(&[("x-a", "1"), ("x-b", "3")]).as_deref(), Some("all"));
    assert_eq!(f(&[("x-a", "1"), ("x-b", "2")]), None);
    assert_eq!(f(&[("x-a", "1"), ("x-c", "")]), None);
    assert_eq!(f(&[]), None);

    let t = one_vhost(
        r#"
    - { name: not-canary, match: { headers: [{ name: x-env, value: { exact: canary }, invert: true }] }, cluster: c }
"#,
    );
    let f =
        |pairs: &[(&'static str, &'static str)]| find(&t, None, Method::GET, "/", &headers(pairs));
    assert_eq!(f(&[]).as_deref(), Some("not-canary"));
    assert_eq!(f(&[("x-env", "prod")]).as_deref(), Some("not-canary"));
    assert_eq!(f(&[("x-env", "canary")]), None);
    // Header values need not be UTF-8.
    let mut h = HeaderMap::new();
    h.insert(
        "x-env",
        HeaderValue::from_bytes(b"\xff\xfe").expect("obs-text value"),
    );
    assert_eq!(
        find(&t, None, Method::GET, "/", &h).as_deref(),
        Some("not-canary")
    );
}

#[test]
fn first_match_wins_across_index_kinds() {
    let t = one_vhost(
        r#"
    - { name: r0, match: { path: { regex: "/x/.*" } }, cluster: c }
    - { name: p1, match: { path: { prefix: /y }, methods: [POST] }, cluster: c }
    - { name: e2, match: { path: { exact: /y/1 }, methods: [PUT] }, cluster: c }
    - { name: any3, match: { methods: [DELETE] }, cluster: c }
    - { name: p4, match: { path: { prefix: /y/ } }, cluster: c }
    - { name: e5, match: { path: { exact: /x/1 } }, cluster: c }
    - { name: e6, match: { path: { exact: /y/1 } }, cluster: c }
    - { name: r7, match: { path: { regex: "/y/[0-9]" } }, cluster: c }
"#,
    );
    let h = HeaderMap::new();
    let f = |m: Method, p: &str| find(&t, None, m, p, &h);
    assert_eq!(f(Method::GET, "/x/1").as_deref(), Some("r0"));
    assert_eq!(f(Method::GET, "/y/1").as_deref(), Some("p4"));
    assert_eq!(f(Method::POST, "/y/1").as_deref(), Some("p1"));
    assert_eq!(f(Method::PUT, "/y/1").as_deref(), Some("e2"));
    assert_eq!(f(Method::DELETE, "/y/1").as_deref(), Some("any3"));
    assert_eq!(f(Method::DELETE, "/x/1").as_deref(), Some("r0"));
    assert_eq!(f(Method::GET, "/y").as_deref(), None);
    assert_eq!(f(Method::POST, "/y").as_deref(), Some("p1"));

    let t = one_vhost(
        r#"
    - { name: e0, match: { path: { exact: /a }, methods: [POST] }, cluster: c }
    - { name: r1, match: { path: { regex: "/a" } }, cluster: c }
    - { name: e2, match: { path: { exact: /a } }, cluster: c }
"#,
    );
    assert_eq!(find(&t, None, Method::GET, "/a", &h).as_deref(), Some("r1"));
    assert_eq!(
        find(&t, None, Method::POST, "/a", &h).as_deref(),
        Some("e0")
    );
}

#[test]
fn many_regex_routes_span_chunks() {
    let routes: String = (0..100)
        .map(|i| format!("    - {{ name: r{i}, match: {{ path: {{ regex: \"/r{i}/[0-9]+\" }} }}, cluster: c }}\n"))
        .collect();
    let t = one_vhost(&routes);
    assert_eq!(get(&t, "h", "/r0/1").as_deref(), Some("r0"));
    assert_eq!(get(&t, "h", "/r31/1").as_deref(), Some("r31"));
    assert_eq!(get(&t, "h", "/r32/1").as_deref(), Some("r32"));
    assert_eq!(get(&t, "h", "/r99/123").as_deref(), Some("r99"));
    assert_eq!(get(&t, "h", "/r100/1"), None);
    assert_eq!(get(&t, "h", "/r5/x"), None);
}

#[test]
fn route_names_and_order() {
    let t = table(
        r#"
- name: one
  domains: ["one"]
  routes:
    - { match: {}, cluster: c }
    - { name: named, match: {}, cluster: d, timeout: 2s }
- name: two
  domains: ["two"]
  routes:
    - { match: {}, cluster: c }
"#,
    );
    let names: Vec<_> = t
        .routes()
        .map(|r| (r.name.to_string(), r.vhost.to_string()))
        .collect();
    assert_eq!(
        names,
        [("one/0", "one"), ("named", "one"), ("two/0", "two")]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let named = route(&t, "named");
    assert_eq!(&*named.cluster, "d");
    assert_eq!(named.timeout, Some(std::time::Duration::from_secs(2)));
    assert!(named.retry.is_none() && named.host_rewrite.is_none());
    assert!(named.request_headers.is_empty() && named.response_headers.is_empty());
    assert_eq!(
        format!("{t:?}"),
        "RouteTable { virtual_hosts: 2, routes: 3 }"
    );
}

#[test]
fn prefix_rewrite() {
    let t = one_vhost(
        r#"
    - { name: api, match: { path: { prefix: /api/ } }, cluster: c, prefix_rewrite: /v2/ }
    - { name: strip, match: { path: { prefix: /strip } }, cluster: c, prefix_rewrite: / }
    - { name: plain, match: { path: { prefix: /plain } }, cluster: c }
"#,
    );
    let api = route(&t, "api");
    assert_eq!(api.rewrite_path("/api/users").as_deref(), Some("/v2/users"));
    assert_eq!(
        api.rewrite_path("/api/users?id=1&x=/api/").as_deref(),
        Some("/v2/users?id=1&x=/api/")
    );
    assert_eq!(api.rewrite_path("/api/").as_deref(), Some("/v2/"));
    assert_eq!(api.rewrite_path("/api/?q").as_deref(), Some("/v2/?q"));
    // The prefix must be in the path, not the query.
    assert_eq!(api.rewrite_path("/ap?i/"), None);
    assert_eq!(api.rewrite_path("/other"), None);
    let strip = route(&t, "strip");
    assert_eq!(strip.rewrite_path("/strip").as_deref(), Some("/"));
    assert_eq!(strip.rewrite_path("/strip?a=b").as_deref(), Some("/?a=b"));
    assert_eq!(route(&t, "plain").rewrite_path("/plain/x"), None);
}

#[test]
fn header_mutations_and_host_rewrite() {
    let t = one_vhost(
        r#"
    - name: r
      match: {}
      cluster: c
      host_rewrite: upstream.internal:8080
      request_headers_to_remove: [X-Internal, x-replace]
      request_headers_to_add:
        - { name: x-replace, value: new }
        - { name: X-Append, value: two, append: true }
        - { name: x-set, value: one }
        - { name: x-set, value: final }
      response_headers_to_add:
        - { name: server, value: proxy }
"#,
    );
    let r = route(&t, "r");
    assert_eq!(
        r.host_rewrite.as_ref().map(|h| h.as_bytes()),
        Some(&b"upstream.internal:8080"[..])
    );
    assert!(!r.request_headers.is_empty());
    let mut h = headers(&[
        ("x-internal", "secret"),
        ("x-replace", "old"),
        ("x-append", "one"),
        ("x-keep", "k"),
    ]);
    r.request_headers.apply(&mut h);
    assert!(h.get("x-internal").is_none());
    assert_eq!(h.get_all("x-replace").iter().collect::<Vec<_>>(), ["new"]);
    assert_eq!(
        h.get_all("x-append").iter().collect::<Vec<_>>(),
        ["one", "two"]
    );
    assert_eq!(h.get_all("x-set").iter().collect::<Vec<_>>(), ["final"]);
    assert_eq!(h.get("x-keep").map(|v| v.as_bytes()), Some(&b"k"[..]));

    let mut h = headers(&[("server", "upstream")]);
    r.response_headers.apply(&mut h);
    assert_eq!(h.get_all("server").iter().collect::<Vec<_>>(), ["proxy"]);

    let empty = HeaderMutations::default();
    assert!(empty.is_empty());
    let mut h = headers(&[("a", "b")]);
    empty.apply(&mut h);
    assert_eq!(h.len(), 1);
}

#[test]
fn retry_policy() {
    let t = one_vhost(
        r#"
    - { name: default, match: {}, cluster: c, retry: { attempts: 2 } }
    - { name: server, match: {}, cluster: c, retry: { attempts: 10, retry_on: [5xx], per_try_timeout: 250ms } }
    - { name: gateway, match: {}, cluster: c, retry: { attempts: 0, retry_on: [gateway_error, per_try_timeout] } }
"#,
    );
    let policy = |name| route(&t, name).retry.expect("has a retry policy");
    let p = policy("default");
    assert_eq!(p.attempts, 2);
    assert_eq!(p.per_try_timeout, None);
    assert!(p.retries_on(RetryOn::ConnectFailure) && p.retries_on(RetryOn::Reset));
    assert!(!p.retries_on(RetryOn::ServerError) && !p.retries_on(RetryOn::GatewayError));
    let p = policy("server");
    assert_eq!(
        p.per_try_timeout,
        Some(std::time::Duration::from_millis(250))
    );
    assert!(p.retries_on(RetryOn::ServerError) && p.retries_on(RetryOn::GatewayError));
    assert!(!p.retries_on(RetryOn::ConnectFailure) && !p.retries_on(RetryOn::PerTryTimeout));
    let p = policy("gateway");
    assert!(p.retries_on(RetryOn::GatewayError) && p.retries_on(RetryOn::PerTryTimeout));
    assert!(!p.retries_on(RetryOn::ServerError));
}

#[test]
fn find_survives_odd_input() {
    let t = one_vhost(
        r#"
    - { name: r, match: { path: { regex: "/.*" }, headers: [{ name: x, value: { regex: ".*" } }] }, cluster: c }
    - { name: p, match: { path: { prefix: "/é" } }, cluster: c }
"#,
    );
    let h = HeaderMap::new();
    for host in [
        "",
        ":",
        "[",
        "]",
        "[:",
        "ÉÉÉ:80",
        "é\u{0}:",
        "Ǆ",
        "[::1",
        "a:b:c",
    ] {
        for path in ["", "/", "é", "/é", "/\u{0}", "*", "/é\u{10ffff}"] {
            let _ = t.find(Some(host), &Method::GET, path, &h);
        }
    }
    assert_eq!(get(&t, "x", "/éa").as_deref(), Some("p"));
    let empty = table("[]");
    assert!(empty.find(None, &Method::GET, "/", &h).is_none());
    assert_eq!(empty.routes().count(), 0);
}
