//! HTTP/2 with prior knowledge (h2c) and HTTP/1.1 on one `protocol: auto` listener,
//! with curl and h2load.

use crate::common;

use std::time::Duration;

use common::*;
use proxy_test_support::{
    tools::{self, H2loadRequests},
    upstream::{response, Echoed},
    with_timeout, Upstream,
};

const LIMIT: Duration = Duration::from_secs(120);
const CURL: Duration = Duration::from_secs(20);

async fn fixed_setup() -> (Sidecar, Upstream, ConfigBuilder) {
    // Answers every request with 200 and a fixed 1 KiB body.
    let up = Upstream::http(|_| response(200, vec![b'x'; 1024]));
    let mut cfg = ConfigBuilder::new()
        .routes(vec![route("all", "/", "fixed", "")])
        .cluster(cluster("fixed", up.addr, ""));
    let sc = Sidecar::start_with(&mut cfg).await;
    (sc, up, cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_prior_knowledge_and_http1_on_one_port() {
    if !tools::installed("curl") {
        return;
    }
    with_timeout(LIMIT, async {
        let up = Upstream::echo("echo");
        let mut cfg = ConfigBuilder::new()
            .routes(vec![route("all", "/", "echo", "")])
            .cluster(cluster("echo", up.addr, ""));
        let _sc = Sidecar::start_with(&mut cfg).await;
        let url = format!("http://{}/h2/path?x=1", cfg.listen);

        let r = curl(
            &["--http2-prior-knowledge", "--data-binary", "h2 body", &url],
            CURL,
        )
        .await;
        assert_eq!(r.exit_code, 0, "curl h2c failed: {}", r.stderr);
        assert_eq!(r.protocol, "HTTP/2", "answered over HTTP/2");
        assert_eq!(r.status, 200);
        let e = Echoed::parse(&r.body);
        assert_eq!(e.method, "POST");
        assert_eq!(e.uri, "/h2/path?x=1");
        assert_eq!(e.body, "h2 body");
        assert_eq!(e.version, "HTTP/1.1", "cluster protocol http1 by default");
        assert_eq!(e.header("x-forwarded-proto"), Some("http"));
        let host = e.header("host").unwrap_or_default();
        assert_eq!(
            host,
            cfg.listen.to_string(),
            ":authority becomes Host upstream"
        );

        // The same port still speaks HTTP/1.1.
        let r = curl(&["--http1.1", &url], CURL).await;
        assert_eq!(r.exit_code, 0, "curl h1 failed: {}", r.stderr);
        assert_eq!(r.protocol, "HTTP/1.1");
        assert_eq!(r.status, 200);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_to_an_http2_cluster() {
    if !tools::installed("curl") {
        return;
    }
    with_timeout(LIMIT, async {
        let up = Upstream::echo("echo-h2");
        let mut cfg = ConfigBuilder::new()
            .routes(vec![route("all", "/", "echo", "")])
            .cluster(cluster("echo", up.addr, "protocol: http2"));
        let _sc = Sidecar::start_with(&mut cfg).await;
        let url = format!("http://{}/via-h2", cfg.listen);
        for flag in ["--http2-prior-knowledge", "--http1.1"] {
            let r = curl(&[flag, &url], CURL).await;
            assert_eq!(r.exit_code, 0, "curl {flag}: {}", r.stderr);
            assert_eq!(r.status, 200, "curl {flag}: {}", r.text());
            let e = Echoed::parse(&r.body);
            assert_eq!(
                e.version, "HTTP/2.0",
                "cluster protocol http2 speaks h2c upstream ({flag})"
            );
            assert_eq!(e.uri.rsplit_once("/").map(|(_, p)| p), Some("via-h2"));
        }
    })
    .await;
}

fn assert_all_succeeded(r: Option<H2loadRequests>, n: u64, out: &str) {
    let r = r.unwrap_or_else(|| panic!("no requests: line in h2load output:\n{out}"));
    assert_eq!(r.failed, 0, "h2load failed requests:\n{out}");
    assert_eq!(r.errored, 0, "h2load errored requests:\n{out}");
    assert_eq!(r.timeout, 0, "h2load timed-out requests:\n{out}");
    assert_eq!(r.succeeded, n, "h2load: all {n} requests succeed:\n{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2load_h2c_all_succeed() {
    if !tools::installed("h2load") {
        return;
    }
    let _heavy = heavy_test_lock().await;
    with_timeout(LIMIT, async {
        let (sc, up, cfg) = fixed_setup().await;
        let url = format!("http://{}/", cfg.listen);
        let (r, out) = tools::h2load(
            &["-n", "2000", "-c", "10", "-m", "10", &url],
            Duration::from_secs(90),
        )
        .await
        .expect("h2load is installed");
        assert_all_succeeded(r, 2000, &out);
        assert!(out.contains("2000 2xx"), "all 2xx:\n{out}");
        assert_eq!(up.hits(), 2000, "every request reached the upstream once");
        let m = sc.metrics().await;
        assert!(
            metric_sum(&m, &["proxy_route_requests_total", "route=\"all\""]) >= 2000.0,
            "route counter:\n{m}"
        );
        assert!(
            metric_sum(
                &m,
                &[
                    "proxy_cluster_responses_total",
                    "cluster=\"fixed\"",
                    "class=\"2xx\""
                ]
            ) >= 2000.0,
            "cluster 2xx counter:\n{m}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2load_http1_all_succeed() {
    if !tools::installed("h2load") {
        return;
    }
    let _heavy = heavy_test_lock().await;
    with_timeout(LIMIT, async {
        let (_sc, up, cfg) = fixed_setup().await;
        let url = format!("http://{}/", cfg.listen);
        let (r, out) = tools::h2load(
            &["--h1", "-n", "2000", "-c", "10", &url],
            Duration::from_secs(90),
        )
        .await
        .expect("h2load is installed");
        assert_all_succeeded(r, 2000, &out);
        assert!(out.contains("2000 2xx"), "all 2xx:\n{out}");
        assert_eq!(up.hits(), 2000);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2load_http1_pipelined_all_succeed() {
    if !tools::installed("h2load") {
        return;
    }
    let _heavy = heavy_test_lock().await;
    with_timeout(LIMIT, async {
        let (_sc, _up, cfg) = fixed_setup().await;
        let url = format!("http://{}/", cfg.listen);
        // -m with --h1 pipelines requests on each connection.
        let (r, out) = tools::h2load(
            &["--h1", "-n", "1000", "-c", "4", "-m", "8", &url],
            Duration::from_secs(90),
        )
        .await
        .expect("h2load is installed");
        assert_all_succeeded(r, 1000, &out);
    })
    .await;
}
