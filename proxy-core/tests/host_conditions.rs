//! A route's header condition on `host` (or `:authority`, the same) on real sockets:
//! it sees the authority the request names, whichever way it names it: HTTP/1.1's
//! Host field, an absolute-form target, or HTTP/2's `:authority` (which carries no
//! Host field), even when every virtual host is `*`.

use std::time::Duration;

use bytes::Bytes;
use proxy_core::Registry;
use proxy_test_support::{
    client::{self, raw},
    server::TestServer,
    timeout::with_timeout,
    upstream::Upstream,
    yaml,
};

/// One listener, `web`, whose only virtual host is `*`: requests for
/// `admin.example.org` (a condition on `:authority`) or any `*.example.com` (one on
/// `host`) go to `named`, the rest to `rest`.
fn start(named: &Upstream, rest: &Upstream) -> TestServer {
    let cfg = format!(
        r#"runtime: {{ worker_threads: 1 }}
listeners:
  - name: web
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - name: admin
            match: {{ path: {{ prefix: "/" }}, headers: [{{ name: ":authority", value: {{ exact: admin.example.org }} }}] }}
            cluster: named
          - name: shop
            match: {{ path: {{ prefix: "/" }}, headers: [{{ name: host, value: {{ suffix: .example.com }} }}] }}
            cluster: named
          - name: rest
            match: {{ path: {{ prefix: "/" }} }}
            cluster: rest
clusters:
{}{}"#,
        yaml::cluster("named", &[named.addr], &[]),
        yaml::cluster("rest", &[rest.addr], &[]),
    );
    TestServer::start(&cfg, Registry::default())
}

fn empty_get(uri: &str) -> http::Result<http::Request<http_body_util::Full<Bytes>>> {
    http::Request::get(uri).body(http_body_util::Full::new(Bytes::new()))
}

/// The request counts of (`named`, `rest`) after one more request to `named` or not.
fn went_to((named, rest): (usize, usize), to_named: bool) -> (usize, usize) {
    if to_named {
        (named + 1, rest)
    } else {
        (named, rest + 1)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_condition_on_host_sees_the_authority_over_http2_and_http1() {
    with_timeout(Duration::from_secs(60), async {
        let (named, rest) = (Upstream::head_echo(), Upstream::head_echo());
        let server = start(&named, &rest);
        let addr = server.addr("web");
        // HTTP/2: the authority is `:authority`; hyper sends no Host beside it. It is
        // matched as sent, port included, as a Host field is.
        for (uri, to_named) in [
            ("http://api.example.com/p", true),
            ("http://api.example.com:8443/p", false),
            ("http://admin.example.org/p", true),
            ("http://api.example.net/p", false),
        ] {
            let before = (named.requests().len(), rest.requests().len());
            let answer = client::send_h2c(addr, empty_get(uri).unwrap())
                .await
                .unwrap();
            assert_eq!(answer.status, 200, "{uri}: {}", answer.text());
            assert_eq!(
                (named.requests().len(), rest.requests().len()),
                went_to(before, to_named),
                "{uri}"
            );
        }
        // HTTP/1.1: the Host field, or the absolute-form target's authority, which
        // replaces it (RFC 9112 3.2.2).
        for (head, to_named) in [
            ("GET /p HTTP/1.1\r\nhost: shop.example.com\r\n", true),
            ("GET /p HTTP/1.1\r\nhost: shop.example.net\r\n", false),
            (
                "GET http://shop.example.com/p HTTP/1.1\r\nhost: shop.example.com\r\n",
                true,
            ),
        ] {
            let before = (named.requests().len(), rest.requests().len());
            let req = format!("{head}connection: close\r\n\r\n");
            let answer = raw::exchange(addr, req.as_bytes(), Duration::from_millis(500)).await;
            let answer = String::from_utf8_lossy(&answer);
            assert!(answer.starts_with("HTTP/1.1 200"), "{head}: {answer}");
            assert_eq!(
                (named.requests().len(), rest.requests().len()),
                went_to(before, to_named),
                "{head}"
            );
        }
    })
    .await;
}
