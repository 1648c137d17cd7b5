//! A reload's filters reach the connections already open: traffic steering, RBAC
//! and a local rate limit changed by a reload apply to the next request of an open
//! HTTP/1.1 keep-alive connection and of an open HTTP/2 connection, as routes did.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use proxy_core::Registry;
use proxy_test_support::{server::TestServer, upstream::Upstream};

fn registry() -> Registry {
    let mut r = Registry::default();
    proxy_lb::register(&mut r);
    proxy_filters::register(&mut r);
    r
}

/// The config: steering `x-pick: yes` to `group`, RBAC denying `deny_path`, and a
/// rate limit of `burst` requests.
fn config(listen: &str, a: &str, b: &str, group: &str, deny_path: &str, burst: u32) -> String {
    format!(
        r#"
listeners:
  - name: web
    address: {listen}
    http_filters:
      - typed: rbac
        config:
          default_action: allow
          policies:
            - name: closed
              action: deny
              principals: [{{any: true}}]
              permissions: [{{path: {{exact: "{deny_path}"}}}}]
      - typed: local_rate_limit
        config: {{rate: {{requests: {burst}, per: 1h, burst: {burst}}}}}
      - typed: traffic_steering
        config:
          rules:
            - name: pick
              match: {{headers: [{{name: x-pick, value: {{exact: "yes"}}}}]}}
              to: {{group: {group}}}
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes: [{{match: {{}}, cluster: app}}]
clusters:
  - name: app
    lb: {{typed: subset, config: {{inner: round_robin, fallback: none}}}}
    endpoints:
      - {{address: "{a}", metadata: {{group: a}}}}
      - {{address: "{b}", metadata: {{group: b}}}}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloaded_filters_apply_to_open_connections() {
    tokio::time::timeout(Duration::from_secs(60), run())
        .await
        .expect("test timed out");
}

async fn run() {
    let a = Upstream::named("a");
    let b = Upstream::named("b");
    let (a, b) = (a.addr.to_string(), b.addr.to_string());
    let server = TestServer::start(
        &config("127.0.0.1:0", &a, &b, "a", "/closed", 1000),
        registry(),
    );
    let addr = server.addr("web");

    // One HTTP/1.1 keep-alive connection and one h2c connection, opened before the
    // reload and used after it.
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect h1");
    let (mut h1, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn);
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect h2");
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);

    async fn get_h1(
        s: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
        path: &str,
        pick: bool,
    ) -> (u16, String) {
        let mut req = http::Request::get(path).header("host", "x");
        if pick {
            req = req.header("x-pick", "yes");
        }
        let resp = s
            .send_request(req.body(Empty::new()).expect("req"))
            .await
            .expect("h1 response");
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
    async fn get_h2(
        s: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
        path: &str,
        pick: bool,
    ) -> (u16, String) {
        let mut req = http::Request::get(format!("http://x{path}"));
        if pick {
            req = req.header("x-pick", "yes");
        }
        let resp = s
            .send_request(req.body(Empty::new()).expect("req"))
            .await
            .expect("h2 response");
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    // Before: steering picks group a, /open and /later are allowed.
    assert_eq!(get_h1(&mut h1, "/open", true).await, (200, "a".into()));
    assert_eq!(get_h2(&mut h2, "/open", true).await, (200, "a".into()));
    assert_eq!(get_h1(&mut h1, "/later", false).await.0, 200);
    assert_eq!(get_h2(&mut h2, "/later", false).await.0, 200);

    // Reload (the same listener: same name and address): steering to group b, RBAC
    // denies /later, a burst of 2 requests.
    server
        .reload(&config("127.0.0.1:0", &a, &b, "b", "/later", 2))
        .expect("reload accepted");

    // The next request on each open connection runs the new filters.
    assert_eq!(
        get_h1(&mut h1, "/open", true).await,
        (200, "b".into()),
        "steering on h1"
    );
    assert_eq!(
        get_h2(&mut h2, "/open", true).await,
        (200, "b".into()),
        "steering on h2"
    );
    assert_eq!(get_h1(&mut h1, "/later", false).await.0, 403, "rbac on h1");
    assert_eq!(get_h2(&mut h2, "/later", false).await.0, 403, "rbac on h2");
    // The new limiter's burst of 2 was spent by the two steered requests above (RBAC
    // denials come first and spend nothing): the next requests are limited.
    assert_eq!(
        get_h1(&mut h1, "/open", false).await.0,
        429,
        "rate limit on h1"
    );
    assert_eq!(
        get_h2(&mut h2, "/open", false).await.0,
        429,
        "rate limit on h2"
    );
}
