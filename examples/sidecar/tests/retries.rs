//! Route `retry` policies and the cluster `retry_budget`: connect failures retried on
//! the next endpoint, 5xx retried, retries capped by the budget, buffered request
//! bodies replayed.

use crate::common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Method, Response, StatusCode};
use proxy_test_support::{
    client::{self, raw},
    free_addr,
    upstream::{response, spawn_raw},
    with_timeout, Upstream,
};
use tokio::{io::AsyncWriteExt, net::TcpStream};

const LIMIT: Duration = Duration::from_secs(60);

/// An upstream answering 503 to its first request and 200 (body `second`) afterwards.
fn fails_first() -> Upstream {
    Upstream::canned(vec![
        Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .body(Bytes::from("first"))
            .expect("response"),
        Response::new(Bytes::from("second")),
    ])
}

/// An upstream answering 503 to its first request and 200 afterwards, the body
/// `attempt <n>` (n from 0).
fn attempts() -> Upstream {
    Upstream::http(|seen| {
        let status = if seen.n == 0 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        };
        response(status.as_u16(), format!("attempt {}", seen.n))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_is_retried_on_the_next_endpoint() {
    with_timeout(LIMIT, async {
        // A port nothing listens on, then a live endpoint.
        let dead = free_addr();
        let alive = Upstream::named("alive");
        let mut cfg = ConfigBuilder::new()
            .routes(vec![
                route(
                    "retrying",
                    "/retry/",
                    "two",
                    "retry: {attempts: 1, retry_on: [connect_failure]}",
                ),
                route("plain", "/plain/", "two", ""),
            ])
            .cluster(format!(
                "{{name: two, endpoints: [\"{dead}\", \"{}\"], connect_timeout: 1s, \
                 retry_budget: {{budget_percent: 100, min_retries_per_second: 1000}}}}",
                alive.addr
            ));
        let sc = Sidecar::start_with(&mut cfg).await;
        let mut client = client::H1Client::new(cfg.listen);

        for i in 0..20 {
            let r = client
                .request(Method::GET, &format!("/retry/{i}"), &[], Bytes::new())
                .await
                .expect("request");
            assert_eq!(
                r.status,
                StatusCode::OK,
                "request {i} with retry on connect_failure: {} {:?}",
                r.text(),
                r.header("x-proxy-error")
            );
            assert_eq!(r.text(), "alive");
        }

        // Without a retry policy round robin sends every other request to the dead one.
        let (mut ok, mut refused) = (0, 0);
        for i in 0..20 {
            let r = client
                .request(Method::GET, &format!("/plain/{i}"), &[], Bytes::new())
                .await
                .expect("request");
            match r.status {
                StatusCode::OK => ok += 1,
                StatusCode::SERVICE_UNAVAILABLE => {
                    assert_eq!(r.header("x-proxy-error"), Some("connect_failure"));
                    refused += 1;
                }
                s => panic!("unexpected {s} for /plain/{i}: {}", r.text()),
            }
        }
        assert!(
            (6..=14).contains(&refused),
            "about half of 20 get 503 without retries: {refused} refused, {ok} ok"
        );

        let m = sc.metrics().await;
        let dead_failures = metric_sum(
            &m,
            &[
                "proxy_endpoint_local_responses_total{",
                &format!("endpoint=\"{dead}\""),
                "reason=\"connect_failure\"",
            ],
        );
        assert!(
            dead_failures >= 20.0,
            "every first attempt on the dead endpoint counted ({dead_failures}):\n{m}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_error_is_retried_with_retry_on_5xx() {
    with_timeout(LIMIT, async {
        let retried = fails_first();
        let not_retried = fails_first();
        let mut cfg = ConfigBuilder::new()
            .routes(vec![
                route(
                    "on5xx",
                    "/on5xx/",
                    "retried",
                    "retry: {attempts: 1, retry_on: [5xx]}",
                ),
                route(
                    "onconnect",
                    "/onconnect/",
                    "not_retried",
                    "retry: {attempts: 1, retry_on: [connect_failure]}",
                ),
            ])
            .cluster(cluster("retried", retried.addr, ""))
            .cluster(cluster("not_retried", not_retried.addr, ""));
        let _sc = Sidecar::start_with(&mut cfg).await;

        let r = client::request(cfg.listen, Method::GET, "/on5xx/x", &[], Bytes::new())
            .await
            .expect("request");
        assert_eq!(r.status, StatusCode::OK, "503 then 200: {}", r.text());
        assert_eq!(r.text(), "second");
        assert_eq!(
            retried.hits(),
            2,
            "the upstream saw the first try and the retry"
        );

        // 5xx is not retried when only connect failures are.
        let r = client::request(cfg.listen, Method::GET, "/onconnect/x", &[], Bytes::new())
            .await
            .expect("request");
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
        assert_eq!(r.text(), "first", "the upstream's own 503 passes through");
        assert_eq!(
            not_retried.hits(),
            1,
            "no retry on 5xx without retry_on: [5xx]"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_to_an_http2_cluster_carries_the_whole_head_again() {
    // An HTTP/2 upstream is given the request's head as its own: copied for an
    // attempt a retry may follow, handed over on the last one.
    with_timeout(LIMIT, async {
        let up = fails_first();
        let mut cfg = ConfigBuilder::new()
            .routes(vec![route(
                "h2",
                "/h2/",
                "h2",
                "retry: {attempts: 1, retry_on: [5xx]}",
            )])
            .cluster(cluster("h2", up.addr, "protocol: http2"));
        let _sc = Sidecar::start_with(&mut cfg).await;

        let headers = [("x-trace", "abc"), ("x-tenant", "t1")];
        let r = client::request(cfg.listen, Method::GET, "/h2/x?q=1", &headers, Bytes::new())
            .await
            .expect("request");
        assert_eq!(r.status, StatusCode::OK, "503 then 200: {}", r.text());
        assert_eq!(r.text(), "second");
        let seen = up.requests();
        assert_eq!(seen.len(), 2, "the first try and the retry");
        for (i, s) in seen.iter().enumerate() {
            assert_eq!(s.version, http::Version::HTTP_2, "attempt {i}");
            assert_eq!(
                s.uri.path_and_query().map(|p| p.as_str()),
                Some("/h2/x?q=1")
            );
            assert_eq!(s.header("x-trace"), Some("abc"), "attempt {i}");
            assert_eq!(s.header("x-tenant"), Some("t1"), "attempt {i}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_budget_caps_retries() {
    with_timeout(LIMIT, async {
        let down = Upstream::http(|_| response(503, "down"));
        let mut cfg = ConfigBuilder::new()
            .routes(vec![route(
                "budgeted",
                "/",
                "down",
                "retry: {attempts: 1, retry_on: [5xx]}",
            )])
            .cluster(cluster(
                "down",
                down.addr,
                "retry_budget: {budget_percent: 0, min_retries_per_second: 1}",
            ));
        let started = Instant::now();
        let _sc = Sidecar::start_with(&mut cfg).await;
        let mut client = client::H1Client::new(cfg.listen);
        for i in 0..50 {
            let r = client
                .request(Method::GET, &format!("/r/{i}"), &[], Bytes::new())
                .await
                .expect("request");
            assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        }
        // One retry a second, plus the one the budget starts with.
        let seconds = started.elapsed().as_secs_f64().ceil() as u64;
        let seen = down.hits();
        let retries = seen - 50;
        assert!(
            retries >= 1,
            "the budget allows at least one retry; upstream saw {seen}"
        );
        assert!(
            retries <= 1 + seconds + 2,
            "the budget (0%, 1 retry/s) caps retries: upstream saw {seen} requests for \
             50 (that is {retries} retries in {seconds} s)"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_post_body_is_replayed_on_retry() {
    with_timeout(LIMIT, async {
        let up = attempts();
        let mut cfg = ConfigBuilder::new()
            .routes(vec![route(
                "post",
                "/",
                "up",
                "retry: {attempts: 2, retry_on: [5xx]}",
            )])
            .cluster(cluster("up", up.addr, ""));
        let sc = Sidecar::start_with(&mut cfg).await;

        // Head and body in one write, so the body is whole when the head is parsed.
        let body = "hello, retried body";
        let req = format!(
            "POST /submit HTTP/1.1\r\nHost: test\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut s = TcpStream::connect(cfg.listen).await.expect("connect");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            raw::read_response(&mut s, &mut buf),
        )
        .await
        .expect("response within 10 s")
        .expect("response");
        assert_eq!(
            r.status,
            200,
            "retried after 503: {}\n{}",
            r.text(),
            sc.logs()
        );
        assert_eq!(r.text(), "attempt 1");
        let got: Vec<(String, Bytes)> = (up.requests().into_iter())
            .map(|r| (r.header("content-length").unwrap_or("-").to_owned(), r.body))
            .collect();
        assert_eq!(got.len(), 2, "first try and one retry: {got:?}");
        for (i, (cl, b)) in got.iter().enumerate() {
            assert_eq!(b, body.as_bytes(), "attempt {i} got the whole body");
            assert_eq!(cl, &body.len().to_string(), "attempt {i} content-length");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_post_body_is_never_replayed_truncated() {
    with_timeout(LIMIT, async {
        let up = attempts();
        let mut cfg = ConfigBuilder::new()
            .routes(vec![route(
                "post",
                "/",
                "up",
                "retry: {attempts: 2, retry_on: [5xx]}",
            )])
            .cluster(cluster("up", up.addr, ""));
        let _sc = Sidecar::start_with(&mut cfg).await;

        // The head first, the body a moment later: the body streams through.
        let body = "x".repeat(64 * 1024);
        let mut s = TcpStream::connect(cfg.listen).await.expect("connect");
        s.write_all(
            format!(
                "POST /stream HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .expect("write head");
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.write_all(body.as_bytes()).await.expect("write body");
        let mut buf = Vec::new();
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            raw::read_response(&mut s, &mut buf),
        )
        .await
        .expect("response within 10 s")
        .expect("response");
        let got: Vec<Bytes> = up.requests().into_iter().map(|r| r.body).collect();
        for (i, b) in got.iter().enumerate() {
            assert_eq!(
                b.len(),
                body.len(),
                "attempt {i} got {} of {} body bytes",
                b.len(),
                body.len()
            );
        }
        match (r.status, got.len()) {
            // Not replayable: the upstream's 503 passes through.
            (503, 1) => assert_eq!(r.text(), "attempt 0"),
            // Replayed whole (checked above).
            (200, 2) => assert_eq!(r.text(), "attempt 1"),
            (status, n) => panic!("status {status} after {n} attempts: {}", r.text()),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_try_timeout_is_retried_on_the_next_endpoint() {
    with_timeout(LIMIT, async {
        let hole = Upstream::blackhole();
        let alive = Upstream::named("alive");
        let mut cfg = ConfigBuilder::new()
            .routes(vec![route(
                "pertry",
                "/",
                "two",
                "timeout: 5s, retry: {attempts: 1, retry_on: [per_try_timeout], \
                 per_try_timeout: 300ms}",
            )])
            .cluster(format!(
                "{{name: two, endpoints: [\"{}\", \"{}\"]}}",
                hole.addr, alive.addr
            ));
        let _sc = Sidecar::start_with(&mut cfg).await;
        for i in 0..4 {
            let started = Instant::now();
            let r = client::request(
                cfg.listen,
                Method::GET,
                &format!("/t/{i}"),
                &[],
                Bytes::new(),
            )
            .await
            .expect("request");
            let took = started.elapsed();
            assert_eq!(r.status, StatusCode::OK, "request {i}: {}", r.text());
            assert_eq!(r.text(), "alive");
            assert!(
                took < Duration::from_secs(2),
                "request {i} took {took:?}; one 300 ms try at most before the retry"
            );
        }
        assert!(hole.connections() >= 1);
    })
    .await;
}

/// Accepts connections, reads a request head, and closes without answering.
fn closer() -> Upstream {
    spawn_raw(|mut s, _| async move {
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            raw::read_until(&mut s, &mut buf, b"\r\n\r\n"),
        )
        .await;
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_is_retried_with_retry_on_reset() {
    with_timeout(LIMIT, async {
        let closer = closer();
        let closing = closer.addr;
        let alive = Upstream::named("alive");
        let mut cfg = ConfigBuilder::new()
            .routes(vec![
                route(
                    "onreset",
                    "/r/",
                    "two",
                    "retry: {attempts: 1, retry_on: [reset]}",
                ),
                route("plain", "/p/", "two", ""),
            ])
            .cluster(format!(
                "{{name: two, endpoints: [\"{closing}\", \"{}\"], \
                 retry_budget: {{budget_percent: 100, min_retries_per_second: 1000}}}}",
                alive.addr
            ));
        let _sc = Sidecar::start_with(&mut cfg).await;
        for i in 0..6 {
            let r = client::request(
                cfg.listen,
                Method::GET,
                &format!("/r/{i}"),
                &[],
                Bytes::new(),
            )
            .await
            .expect("request");
            assert_eq!(r.status, StatusCode::OK, "request {i}: {}", r.text());
        }
        let mut reset = 0;
        for i in 0..6 {
            let r = client::request(
                cfg.listen,
                Method::GET,
                &format!("/p/{i}"),
                &[],
                Bytes::new(),
            )
            .await
            .expect("request");
            if r.status == StatusCode::BAD_GATEWAY {
                assert_eq!(r.header("x-proxy-error"), Some("upstream_reset"));
                reset += 1;
            } else {
                assert_eq!(r.status, StatusCode::OK, "request {i}: {}", r.text());
            }
        }
        assert_eq!(
            reset, 3,
            "without retries every other request meets the closer"
        );
    })
    .await;
}
