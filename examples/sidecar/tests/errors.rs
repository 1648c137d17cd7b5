//! Answers the proxy makes itself: 503 upstream refused, 504 route timeout, 404 no
//! route, 400 malformed request; each with `x-proxy-error` and a counter in
//! `/stats/prometheus`.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use proxy_test_support::{
    client::{self, raw},
    free_addr, tools,
    upstream::Echoed,
    with_timeout, Upstream,
};

const LIMIT: Duration = Duration::from_secs(60);
const CURL: Duration = Duration::from_secs(20);

/// Asserts that some sample labelled `reason="REASON"` counts at least one answer.
async fn assert_reason_counted(sc: &Sidecar, reason: &str) {
    let m = sc.metrics().await;
    let label = format!("reason=\"{reason}\"");
    let n = metric_sum(&m, &["_local_responses_total", &label]);
    assert!(
        n >= 1.0,
        "no *_local_responses_total{{..,{label}}} sample >= 1 in /stats/prometheus:\n{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_refused_is_503() {
    if !tools::installed("curl") {
        return;
    }
    with_timeout(LIMIT, async {
        // A port nothing listens on.
        let dead = free_addr();
        let mut cfg = ConfigBuilder::new()
            .routes(vec![route("down", "/", "down", "")])
            .cluster(cluster("down", dead, "connect_timeout: 1s"));
        let sc = Sidecar::start_with(&mut cfg).await;
        let started = Instant::now();
        let r = curl(&[&format!("http://{}/x", cfg.listen)], CURL).await;
        assert_eq!(r.exit_code, 0, "{}", r.stderr);
        assert_eq!(
            r.status,
            503,
            "connection refused upstream -> 503: {}",
            r.text()
        );
        assert!(
            r.header("x-proxy-error").is_some(),
            "x-proxy-error header: {:?}",
            r.headers
        );
        assert_eq!(r.header("x-proxy-error"), Some("connect_failure"));
        assert!(!r.body.is_empty(), "a short body explains the error");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "refused is immediate: {:?}",
            started.elapsed()
        );
        assert_reason_counted(&sc, "connect_failure").await;
        let m = sc.metrics().await;
        assert!(
            metric_sum(
                &m,
                &[
                    "proxy_cluster_responses_total",
                    "cluster=\"down\"",
                    "class=\"5xx\""
                ]
            ) >= 1.0
                || metric_sum(
                    &m,
                    &[
                        "proxy_route_responses_total",
                        "route=\"down\"",
                        "class=\"5xx\""
                    ]
                ) >= 1.0,
            "a 5xx counted for the cluster or route:\n{m}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_silent_with_route_timeout_is_504() {
    if !tools::installed("curl") {
        return;
    }
    with_timeout(LIMIT, async {
        let hole = Upstream::blackhole();
        let mut cfg = ConfigBuilder::new()
            .routes(vec![route("slow", "/", "hole", "timeout: 500ms")])
            .cluster(cluster("hole", hole.addr, ""));
        let sc = Sidecar::start_with(&mut cfg).await;
        let started = Instant::now();
        let r = curl(
            &["--max-time", "10", &format!("http://{}/x", cfg.listen)],
            CURL,
        )
        .await;
        let took = started.elapsed();
        assert_eq!(r.exit_code, 0, "{}", r.stderr);
        assert_eq!(r.status, 504, "route timeout -> 504: {}", r.text());
        assert_eq!(r.header("x-proxy-error"), Some("upstream_timeout"));
        assert!(
            took >= Duration::from_millis(450),
            "answered before the timeout: {took:?}"
        );
        assert!(
            took < Duration::from_secs(3),
            "504 well under 5 s, took {took:?}"
        );
        assert!(hole.connections() >= 1);
        assert_reason_counted(&sc, "upstream_timeout").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_or_path_is_404() {
    if !tools::installed("curl") {
        return;
    }
    with_timeout(LIMIT, async {
        let up = Upstream::echo("echo");
        let mut cfg = ConfigBuilder::new()
            .vhost(
                "known",
                &["known.example"],
                vec![route("api", "/api/", "echo", "")],
            )
            .cluster(cluster("echo", up.addr, ""));
        let sc = Sidecar::start_with(&mut cfg).await;
        let base = format!("http://{}", cfg.listen);

        let ok = curl(
            &["-H", "Host: known.example", &format!("{base}/api/x")],
            CURL,
        )
        .await;
        assert_eq!(
            ok.status, 200,
            "the known host and path route: {}",
            ok.stderr
        );

        let r = curl(
            &["-H", "Host: other.example", &format!("{base}/api/x")],
            CURL,
        )
        .await;
        assert_eq!(r.status, 404, "unknown host: {}", r.text());
        assert_eq!(r.header("x-proxy-error"), Some("no_route"));

        let r = curl(
            &["-H", "Host: known.example", &format!("{base}/nope")],
            CURL,
        )
        .await;
        assert_eq!(r.status, 404, "unknown path: {}", r.text());
        assert_eq!(r.header("x-proxy-error"), Some("no_route"));
        assert!(!r.body.is_empty(), "a short body explains the error");

        let r = curl(
            &[
                "--http2-prior-knowledge",
                "-H",
                "Host: other.example",
                &format!("{base}/api/x"),
            ],
            CURL,
        )
        .await;
        assert_eq!(r.status, 404, "unknown host over h2c: {}", r.stderr);
        assert_eq!(r.header("x-proxy-error"), Some("no_route"));

        assert_eq!(up.hits(), 1, "only the routed request reached the upstream");
        let m = sc.metrics().await;
        assert!(
            metric_sum(&m, &["_local_responses_total", "reason=\"no_route\""]) >= 3.0,
            "{m}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_request_line_is_400() {
    with_timeout(LIMIT, async {
        let up = Upstream::echo("echo");
        let mut cfg = ConfigBuilder::new()
            .routes(vec![route("all", "/", "echo", "")])
            .cluster(cluster("echo", up.addr, ""));
        let sc = Sidecar::start_with(&mut cfg).await;

        // Each is a request line that does not match the HTTP/1.1 grammar: 400 (RFC 9112
        // section 3), not 505, which is for a well-formed but unsupported version.
        let cases: [&[u8]; 4] = [
            b"THIS IS NOT HTTP\r\nHost: x\r\n\r\n",
            b"GET /has space HTTP/1.1\r\nHost: x\r\n\r\n",
            b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1 trailing\r\nHost: x\r\n\r\n",
        ];
        let mut wrong = Vec::new();
        for case in cases {
            let raw = raw::exchange(cfg.listen, case, Duration::from_secs(3)).await;
            let text = String::from_utf8_lossy(&raw).into_owned();
            let head = text
                .split("\r\n\r\n")
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let is_400 = text.starts_with("HTTP/1.1 400") || text.starts_with("HTTP/1.0 400");
            if !is_400 || !head.contains("\r\nx-proxy-error:") {
                wrong.push(format!("{:?} -> {text:?}", String::from_utf8_lossy(case)));
            }
        }
        assert!(
            wrong.is_empty(),
            "malformed request lines must get 400 with x-proxy-error; wrong answers:\n{}",
            wrong.join("\n")
        );
        assert_eq!(up.hits(), 0, "nothing forwarded");
        assert_reason_counted(&sc, "bad_request").await;

        // The proxy still serves well-formed requests afterwards.
        let r = client::request(
            cfg.listen,
            http::Method::GET,
            "/fine",
            &[],
            bytes::Bytes::new(),
        )
        .await
        .expect("request after a malformed one");
        assert_eq!(r.status, http::StatusCode::OK);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_responses_on_keep_alive_do_not_break_the_connection() {
    with_timeout(LIMIT, async {
        let up = Upstream::echo("echo");
        let dead = free_addr();
        let mut cfg = ConfigBuilder::new()
            .routes(vec![
                route("ok", "/ok", "echo", ""),
                route("down", "/down", "down", ""),
            ])
            .cluster(cluster("echo", up.addr, ""))
            .cluster(cluster("down", dead, ""));
        let _sc = Sidecar::start_with(&mut cfg).await;
        let mut c = client::H1Client::new(cfg.listen);
        for path in ["/ok", "/down", "/nothing", "/ok"] {
            let r = c
                .request(http::Method::GET, path, &[], bytes::Bytes::new())
                .await
                .expect(path);
            let want = match path {
                "/ok" => 200,
                "/down" => 503,
                _ => 404,
            };
            assert_eq!(r.status.as_u16(), want, "{path}: {}", r.text());
        }
        assert_eq!(
            c.connects, 1,
            "error answers keep the downstream connection open"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_heads_and_framing_are_400() {
    with_timeout(LIMIT, async {
        let up = Upstream::echo("echo");
        let mut cfg = ConfigBuilder::new()
            .routes(vec![route("all", "/", "echo", "")])
            .cluster(cluster("echo", up.addr, ""));
        let _sc = Sidecar::start_with(&mut cfg).await;

        // RFC 9112: each of these must be answered 400 (and must not reach the upstream).
        let cases: [(&str, &[u8]); 7] = [
            (
                "two different Content-Length values",
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            ),
            (
                "non-numeric Content-Length",
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\nabc",
            ),
            (
                "Transfer-Encoding whose last coding is not chunked",
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc",
            ),
            (
                "header line without a colon",
                b"GET / HTTP/1.1\r\nHost: x\r\nnot a header\r\n\r\n",
            ),
            (
                "whitespace between field name and colon",
                b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            ),
            ("HTTP/1.1 without Host", b"GET / HTTP/1.1\r\n\r\n"),
            (
                "two Host headers",
                b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            ),
        ];
        let mut wrong = Vec::new();
        for (what, bytes) in cases {
            let raw = raw::exchange(cfg.listen, bytes, Duration::from_secs(2)).await;
            let text = String::from_utf8_lossy(&raw).into_owned();
            let head = text
                .split("\r\n\r\n")
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            if !text.starts_with("HTTP/1.1 400") || !head.contains("\r\nx-proxy-error:") {
                wrong.push(format!("{what}: {text:?}"));
            }
        }
        assert!(
            wrong.is_empty(),
            "want 400 with x-proxy-error; wrong answers:\n{}",
            wrong.join("\n")
        );
        assert_eq!(up.hits(), 0, "no malformed request reached the upstream");

        // Content-Length with Transfer-Encoding (a smuggling vector): rejected, or
        // forwarded framed by the chunked coding only, never with both headers.
        let raw = raw::exchange(
            cfg.listen,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            Duration::from_secs(2),
        )
        .await;
        let text = String::from_utf8_lossy(&raw).into_owned();
        if text.starts_with("HTTP/1.1 200") {
            let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
            let e = Echoed::parse(body.as_bytes());
            assert_eq!(e.body, "abc", "the chunked coding frames the body");
            let cl = e.header("content-length");
            assert!(
                !(cl.is_some() && e.header("transfer-encoding").is_some()),
                "both Content-Length and Transfer-Encoding forwarded: {:?}",
                e.headers
            );
        } else {
            assert!(
                text.starts_with("HTTP/1.1 400"),
                "CL+TE: 400 or a correctly framed forward, got {text:?}"
            );
        }
    })
    .await;
}
