//! HTTP/1.1 through the sidecar with curl: status and body pass through, forwarding
//! headers are added, hop-by-hop headers are removed, and route rewrites apply.

use crate::common;

use std::time::Duration;

use common::*;
use proxy_test_support::{tools, upstream::Echoed, with_timeout, Upstream};

const LIMIT: Duration = Duration::from_secs(60);
const CURL: Duration = Duration::from_secs(20);

/// A sidecar with an echo upstream behind a few routes:
/// - `/api/` rewritten to `/v2/`, with request and response header add/remove;
/// - `/rewrite-host/` with `host_rewrite`;
/// - `/` everything else, unchanged.
async fn echo_setup() -> (Sidecar, Upstream, String) {
    let up = Upstream::echo("echo");
    let mut cfg = ConfigBuilder::new()
        .routes(vec![
            route(
                "api",
                "/api/",
                "echo",
                r#"prefix_rewrite: "/v2/", request_headers_to_add: [{name: x-added, value: "yes"}], request_headers_to_remove: [x-secret], response_headers_to_add: [{name: x-resp-added, value: "r1"}], response_headers_to_remove: [x-upstream-internal]"#,
            ),
            route("hostrw", "/rewrite-host/", "echo", r#"host_rewrite: "upstream.internal""#),
            route("all", "/", "echo", ""),
        ])
        .cluster(cluster("echo", up.addr, ""));
    let sc = Sidecar::start_with(&mut cfg).await;
    let base = format!("http://{}", cfg.listen);
    (sc, up, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_body_pass_through() {
    if !tools::installed("curl") {
        return;
    }
    with_timeout(LIMIT, async {
        let (_sc, up, base) = echo_setup().await;
        let url = format!("{base}/some/path?q=1&r=two");
        let r = curl(
            &[
                "-X",
                "POST",
                "--data-binary",
                "hello world",
                "-H",
                "x-echo-status: 201",
                &url,
            ],
            CURL,
        )
        .await;
        assert_eq!(r.exit_code, 0, "curl failed: {}", r.stderr);
        assert_eq!(
            r.status,
            201,
            "status from upstream must pass: {}",
            r.text()
        );
        assert_eq!(r.protocol, "HTTP/1.1");
        assert_eq!(
            r.header("x-upstream"),
            Some("echo"),
            "upstream response headers pass"
        );
        let e = Echoed::parse(&r.body);
        assert_eq!(e.method, "POST");
        assert_eq!(e.uri, "/some/path?q=1&r=two", "path and query unchanged");
        assert_eq!(e.body, "hello world", "request body reaches the upstream");
        assert_eq!(up.hits(), 1);

        // A body-less GET and a HEAD.
        let r = curl(&[&url], CURL).await;
        assert_eq!(r.status, 200);
        assert_eq!(Echoed::parse(&r.body).method, "GET");
        let r = curl(&["-I", &url], CURL).await;
        assert_eq!(r.exit_code, 0, "curl -I failed: {}", r.stderr);
        assert_eq!(r.status, 200);
        assert!(r.body.is_empty(), "HEAD response has no body");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_added_and_host_kept() {
    if !tools::installed("curl") {
        return;
    }
    with_timeout(LIMIT, async {
        let (_sc, _up, base) = echo_setup().await;
        let r = curl(&["-H", "Host: app.example", &format!("{base}/x")], CURL).await;
        assert_eq!(r.status, 200, "{}", r.stderr);
        let e = Echoed::parse(&r.body);
        let xff = e.header("x-forwarded-for").unwrap_or_default();
        assert!(
            xff.contains("127.0.0.1"),
            "x-forwarded-for names the client: {xff:?}"
        );
        assert_eq!(e.header("x-forwarded-proto"), Some("http"));
        assert_eq!(
            e.header("host"),
            Some("app.example"),
            "Host kept without host_rewrite"
        );

        // An existing x-forwarded-for is extended, not replaced.
        let r = curl(
            &["-H", "X-Forwarded-For: 203.0.113.9", &format!("{base}/x")],
            CURL,
        )
        .await;
        let e = Echoed::parse(&r.body);
        let xff = e.header_all("x-forwarded-for").join(",");
        assert!(
            xff.contains("203.0.113.9") && xff.contains("127.0.0.1"),
            "x-forwarded-for keeps the earlier hop and appends the client: {xff:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_removed() {
    if !tools::installed("curl") {
        return;
    }
    with_timeout(LIMIT, async {
        let (_sc, _up, base) = echo_setup().await;
        let r = curl(
            &[
                "-H",
                "Connection: x-foo",
                "-H",
                "x-foo: must-not-pass",
                "-H",
                "Keep-Alive: timeout=5",
                "-H",
                "TE: deflate",
                "-H",
                "Proxy-Connection: keep-alive",
                "-H",
                "x-keep: passes",
                &format!("{base}/hop"),
            ],
            CURL,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.stderr);
        let e = Echoed::parse(&r.body);
        for h in ["x-foo", "keep-alive", "te", "proxy-connection"] {
            assert!(
                e.header(h).is_none(),
                "hop-by-hop header {h} reached the upstream: {:?}",
                e.headers
            );
        }
        for v in e.header_all("connection") {
            assert!(
                !v.to_ascii_lowercase().contains("x-foo"),
                "downstream Connection header forwarded: {v:?}"
            );
        }
        assert_eq!(
            e.header("x-keep"),
            Some("passes"),
            "end-to-end headers pass"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_rewrite_and_header_rules() {
    if !tools::installed("curl") {
        return;
    }
    with_timeout(LIMIT, async {
        let (_sc, _up, base) = echo_setup().await;
        let r = curl(
            &[
                "-H",
                "x-secret: s3cr3t",
                "-H",
                "x-other: kept",
                &format!("{base}/api/items?id=7"),
            ],
            CURL,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.stderr);
        let e = Echoed::parse(&r.body);
        assert_eq!(
            e.uri, "/v2/items?id=7",
            "prefix_rewrite /api/ -> /v2/ keeps the rest and the query"
        );
        assert_eq!(e.header("x-added"), Some("yes"), "request_headers_to_add");
        assert!(
            e.header("x-secret").is_none(),
            "request_headers_to_remove: {:?}",
            e.headers
        );
        assert_eq!(e.header("x-other"), Some("kept"));
        assert_eq!(
            r.header("x-resp-added"),
            Some("r1"),
            "response_headers_to_add"
        );
        assert!(
            r.header("x-upstream-internal").is_none(),
            "response_headers_to_remove"
        );
        assert_eq!(r.header("x-upstream"), Some("echo"));

        // Other routes are not affected by the api route's rules.
        let r = curl(&["-H", "x-secret: s", &format!("{base}/other")], CURL).await;
        let e = Echoed::parse(&r.body);
        assert_eq!(e.uri, "/other");
        assert_eq!(e.header("x-secret"), Some("s"));
        assert!(e.header("x-added").is_none());
        assert_eq!(r.header("x-upstream-internal"), Some("1"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_rewrite() {
    if !tools::installed("curl") {
        return;
    }
    with_timeout(LIMIT, async {
        let (_sc, _up, base) = echo_setup().await;
        let r = curl(
            &["-H", "Host: app.example", &format!("{base}/rewrite-host/a")],
            CURL,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.stderr);
        let e = Echoed::parse(&r.body);
        assert_eq!(e.header("host"), Some("upstream.internal"));
        assert_eq!(e.uri, "/rewrite-host/a");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_reuses_the_downstream_connection() {
    if !tools::installed("curl") {
        return;
    }
    with_timeout(LIMIT, async {
        let (sc, up, base) = echo_setup().await;
        // curl reuses one connection for several URLs in one invocation.
        let urls: Vec<String> = (0..5).map(|i| format!("{base}/ka/{i}")).collect();
        // `-o` applies to one URL: give one per URL.
        let mut args: Vec<&str> = vec!["-sS", "-w", "%{http_code} %{num_connects}\\n"];
        for u in &urls {
            args.extend(["-o", "/dev/null", u.as_str()]);
        }
        let out = tools::curl(&args, CURL).await.expect("curl is installed");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines.iter().all(|l| l.starts_with("200 ")), "{text}");
        let connects: u32 = lines
            .iter()
            .filter_map(|l| l.split(' ').nth(1)?.parse::<u32>().ok())
            .sum();
        assert_eq!(
            connects, 1,
            "curl should reuse one keep-alive connection: {text}"
        );
        assert_eq!(up.hits(), 5);
        let m = sc.metrics().await;
        assert!(
            metric_sum(&m, &["proxy_route_requests_total", "route=\"all\""]) >= 5.0,
            "proxy_route_requests_total{{route=\"all\"}} counts the requests:\n{m}"
        );
    })
    .await;
}
