//! What the proxy answers itself, with curl over HTTP/1.1 and h2c: an `OPTIONS` or
//! `TRACE` with `Max-Forwards: 0`, which never reaches the upstream, while a larger
//! value reaches it one less and other methods pass it as it is (RFC 9110 7.6.2); and
//! `OPTIONS *` (9.3.7).

// Test helpers: a failed setup should stop the test loudly.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use proxy_core::Registry;
use proxy_test_support::{tools, upstream::Echoed, yaml, TestServer, Upstream};

/// A proxy (HTTP/1.1 and h2c on one port) in front of `upstream`.
fn start(upstream: std::net::SocketAddr) -> (TestServer, String) {
    let yaml = yaml::config(
        &[yaml::listener("l", "up", &["protocol: auto"])],
        &[yaml::cluster("up", &[upstream], &[])],
    );
    let proxy = TestServer::start(&yaml, Registry::default());
    let url = format!("http://{}/mf", proxy.addr("l"));
    (proxy, url)
}

/// curl's status code and body for `method` with `Max-Forwards: value` on `url`,
/// over h2c when `h2c`; `None` when curl is not installed.
async fn curl(method: &str, value: &str, url: &str, h2c: bool) -> Option<(String, String)> {
    let header = format!("Max-Forwards: {value}");
    curl_with(&["-X", method, "-H", &header], url, h2c).await
}

/// curl's status code and body for `url` with `args`, over h2c when `h2c`; `None`
/// when curl is not installed.
async fn curl_with(args: &[&str], url: &str, h2c: bool) -> Option<(String, String)> {
    let mut args = [&["-s", "-w", "\n%{http_code}"], args].concat();
    if h2c {
        args.push("--http2-prior-knowledge");
    }
    args.push(url);
    let out = tools::curl(&args, Duration::from_secs(10)).await?;
    let text = out.stdout_text();
    let (body, status) = text.rsplit_once('\n').unwrap();
    Some((status.to_owned(), body.to_owned()))
}

#[tokio::test]
async fn options_and_trace_with_zero_are_answered_by_the_proxy() {
    let up = Upstream::echo("up");
    let (mut proxy, url) = start(up.addr);
    for h2c in [false, true] {
        let Some((status, body)) = curl("OPTIONS", "0", &url, h2c).await else {
            return;
        };
        assert_eq!((status.as_str(), body.as_str()), ("200", ""), "h2c: {h2c}");
        let (status, _) = curl("TRACE", "0", &url, h2c).await.unwrap();
        assert_eq!(status, "501", "h2c: {h2c}");
    }
    assert_eq!(up.connections(), 0, "the upstream heard of a request");
    proxy.stop();
}

#[tokio::test]
async fn a_larger_value_reaches_the_upstream_one_less() {
    let up = Upstream::echo("up");
    let (mut proxy, url) = start(up.addr);
    for h2c in [false, true] {
        for (method, sent, seen) in [
            ("OPTIONS", "5", "4"),
            ("TRACE", "1", "0"),
            ("GET", "0", "0"),
        ] {
            let Some((status, body)) = curl(method, sent, &url, h2c).await else {
                return;
            };
            assert_eq!(status, "200", "{method} h2c: {h2c}");
            let echoed = Echoed::parse(body.as_bytes());
            assert_eq!(echoed.method, method);
            assert_eq!(
                echoed.header("max-forwards"),
                Some(seen),
                "{method} h2c: {h2c}"
            );
        }
    }
    proxy.stop();
}

#[tokio::test]
async fn options_asterisk_is_answered_by_the_proxy() {
    let up = Upstream::echo("up");
    let (mut proxy, url) = start(up.addr);
    for h2c in [false, true] {
        let args = ["-X", "OPTIONS", "--request-target", "*"];
        let Some((status, body)) = curl_with(&args, &url, h2c).await else {
            return;
        };
        assert_eq!((status.as_str(), body.as_str()), ("200", ""), "h2c: {h2c}");
    }
    assert_eq!(up.connections(), 0, "the upstream heard of a request");
    proxy.stop();
}
