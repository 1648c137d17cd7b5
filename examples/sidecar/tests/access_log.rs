//! The access log (`access_log: {format, path}`): one line per request, JSON or text,
//! with the status, method, URI, matched route and the proxy's error reason.

use crate::common;

use std::{path::Path, time::Duration};

use bytes::Bytes;
use common::*;
use http::{Method, StatusCode};
use proxy_test_support::{client, eventually, temp::TempDir, with_timeout, Upstream};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(60);

/// A sidecar with an `/api/` route to an echo upstream, logging in `format` to `log`.
async fn setup(format: &str, log: &Path) -> (Sidecar, Upstream, ConfigBuilder) {
    let up = Upstream::echo("echo");
    let mut cfg = ConfigBuilder::new()
        .routes(vec![route("api", "/api/", "echo", "")])
        .cluster(cluster("echo", up.addr, ""));
    cfg.top_extra = format!(
        "access_log:\n  format: {format}\n  path: \"{}\"\n",
        log.display()
    );
    let sc = Sidecar::start_with(&mut cfg).await;
    (sc, up, cfg)
}

/// Two routed requests (GET, POST with a body) and one without a route.
async fn three_requests(addr: std::net::SocketAddr) {
    let r = client::request(addr, Method::GET, "/api/one?x=1", &[], Bytes::new())
        .await
        .expect("GET");
    assert_eq!(r.status, StatusCode::OK);
    let r = client::request(
        addr,
        Method::POST,
        "/api/two",
        &[],
        Bytes::from_static(b"posted"),
    )
    .await
    .expect("POST");
    assert_eq!(r.status, StatusCode::OK);
    let r = client::request(addr, Method::GET, "/nowhere", &[], Bytes::new())
        .await
        .expect("GET /nowhere");
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// The log's lines once it has at least `n` (waits up to 5 s).
async fn lines(path: &Path, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    let enough = eventually(Duration::from_secs(5), || {
        got = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        got.len() >= n
    })
    .await;
    assert!(enough, "not within 5s: {n} access log lines");
    got
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_with_status_method_uri_route_and_error() {
    with_timeout(LIMIT, async {
        let dir = TempDir::new("access-log");
        let path = dir.join("access.jsonl");
        let (_sc, _up, cfg) = setup("json", &path).await;
        three_requests(cfg.listen).await;
        let got = lines(&path, 3).await;
        // A moment more: nothing beyond the three requests is logged.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let got_after = lines(&path, 3).await;
        assert_eq!(got_after.len(), 3, "one line per request: {got_after:#?}");
        let v: Vec<serde_json::Value> = got.iter().map(|l| json(l)).collect();

        let expect = [
            ("GET", "/api/one?x=1", 200, Some("api"), None),
            ("POST", "/api/two", 200, Some("api"), None),
            ("GET", "/nowhere", 404, None, Some("no_route")),
        ];
        for (i, (method, uri, status, route, error)) in expect.into_iter().enumerate() {
            let l = &v[i];
            assert_eq!(l["method"], method, "line {i}: {l}");
            assert_eq!(l["uri"], uri, "line {i}: {l}");
            assert_eq!(l["status"], status, "line {i}: {l}");
            assert_eq!(l["route"].as_str(), route, "line {i}: {l}");
            assert_eq!(l["proxy_error"].as_str(), error, "line {i}: {l}");
            assert_eq!(l["listener"], "main", "line {i}: {l}");
            assert_eq!(l["version"], "HTTP/1.1", "line {i}: {l}");
            assert!(
                l["peer"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("127.0.0.1:")),
                "line {i} peer: {l}"
            );
            assert!(
                l["duration_ms"].as_f64().is_some_and(|d| d >= 0.0),
                "line {i}: {l}"
            );
            assert!(l["ts"].as_f64().is_some_and(|t| t > 1.6e9), "line {i}: {l}");
            assert!(
                l["bytes_sent"].as_u64().is_some_and(|b| b > 0),
                "line {i} bytes_sent: {l}"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_lines() {
    with_timeout(LIMIT, async {
        let dir = TempDir::new("access-log");
        let path = dir.join("access.log");
        let (_sc, _up, cfg) = setup("text", &path).await;
        three_requests(cfg.listen).await;
        let got = lines(&path, 3).await;
        assert_eq!(got.len(), 3, "{got:#?}");
        for l in &got {
            assert!(
                serde_json::from_str::<serde_json::Value>(l).is_err(),
                "text, not JSON: {l}"
            );
            assert!(l.contains(" main "), "listener name: {l}");
        }
        assert!(
            got[0].contains("\"GET /api/one?x=1 HTTP/1.1\" 200 ") && got[0].contains("route=api"),
            "{}",
            got[0]
        );
        assert!(got[0].contains("error=-"), "{}", got[0]);
        assert!(
            got[1].contains("\"POST /api/two HTTP/1.1\" 200 ") && got[1].contains("route=api"),
            "{}",
            got[1]
        );
        assert!(
            got[2].contains("\"GET /nowhere HTTP/1.1\" 404 ")
                && got[2].contains("route=-")
                && got[2].contains("error=no_route"),
            "{}",
            got[2]
        );
    })
    .await;
}

/// One GET over h2c; the body length.
async fn h2_get(addr: std::net::SocketAddr, path: &str) -> (StatusCode, usize) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (send, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let mut send = send.ready().await.expect("ready");
    let req = http::Request::get(format!("http://{addr}{path}"))
        .body(())
        .expect("request");
    let (resp, _) = send.send_request(req, true).expect("send_request");
    let resp = resp.await.expect("response");
    let status = resp.status();
    let mut body = resp.into_body();
    let mut n = 0;
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("data");
        let _ = body.flow_control().release_capacity(chunk.len());
        n += chunk.len();
    }
    drop(send);
    conn.abort();
    (status, n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_requests_are_logged() {
    with_timeout(LIMIT, async {
        let dir = TempDir::new("access-log");
        let path = dir.join("access.jsonl");
        let (_sc, _up, cfg) = setup("json", &path).await;
        let (status, _) = h2_get(cfg.listen, "/api/h2").await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = h2_get(cfg.listen, "/none").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let got = lines(&path, 2).await;
        let (a, b) = (json(&got[0]), json(&got[1]));
        assert_eq!(a["version"], "HTTP/2.0", "{a}");
        assert_eq!(a["method"], "GET", "{a}");
        assert_eq!(a["status"], 200, "{a}");
        assert_eq!(a["route"], "api", "{a}");
        assert!(
            a["uri"].as_str().is_some_and(|u| u.ends_with("/api/h2")),
            "{a}"
        );
        assert_eq!(b["status"], 404, "{b}");
        assert_eq!(b["proxy_error"], "no_route", "{b}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_bytes_sent_is_logged() {
    with_timeout(LIMIT, async {
        let dir = TempDir::new("access-log");
        let path = dir.join("access.jsonl");
        let (_sc, _up, cfg) = setup("json", &path).await;
        let (status, len) = h2_get(cfg.listen, "/api/h2-bytes").await;
        assert_eq!(status, StatusCode::OK);
        assert!(len > 0);
        let got = lines(&path, 1).await;
        let a = json(&got[0]);
        assert_eq!(
            a["bytes_sent"].as_u64(),
            Some(len as u64),
            "bytes_sent is the response body length the client got: {a}"
        );
    })
    .await;
}
