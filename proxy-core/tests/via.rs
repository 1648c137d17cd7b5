//! `Via` (RFC 9110 7.6.3), with curl over HTTP/1.1 and h2c: a listener that names the
//! proxy (`via: edge-1`) adds `<protocol> edge-1` to every request it forwards, after
//! the entries the request brought, and to every answer it passes back; a request
//! that already names it has come round a loop and is answered 508. One that does
//! not name the proxy adds nothing.

// Test helpers: a failed setup should stop the test loudly.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use proxy_core::Registry;
use proxy_test_support::{ports, tools, upstream::Echoed, yaml, TestServer, Upstream};

/// The `Via` the upstream saw for a `GET` through a proxy whose listener has
/// `listener_keys`, sent with `via` (if any) over h2c when `h2c`; `None` when curl
/// is not installed.
async fn via_seen(listener_keys: &[&str], via: Option<&str>, h2c: bool) -> Option<Option<String>> {
    let up = Upstream::echo("up");
    let yaml = yaml::config(
        &[yaml::listener("l", "up", listener_keys)],
        &[yaml::cluster("up", &[up.addr], &[])],
    );
    let mut proxy = TestServer::start(&yaml, Registry::default());
    let url = format!("http://{}/via", proxy.addr("l"));
    let header = via.map(|v| format!("Via: {v}"));
    let mut args = vec!["-s"];
    if let Some(h) = &header {
        args.extend(["-H", h]);
    }
    if h2c {
        args.push("--http2-prior-knowledge");
    }
    args.push(&url);
    let out = tools::curl(&args, Duration::from_secs(10)).await;
    proxy.stop();
    let echoed = Echoed::parse(out?.stdout_text().as_bytes());
    Some(echoed.header("via").map(str::to_owned))
}

#[tokio::test]
async fn a_named_proxy_adds_itself_after_the_protocol_the_request_came_in() {
    let named = ["protocol: auto", "via: edge-1"];
    let Some(seen) = via_seen(&named, None, false).await else {
        return;
    };
    assert_eq!(seen.as_deref(), Some("1.1 edge-1"));
    let seen = via_seen(&named, None, true).await.unwrap();
    assert_eq!(seen.as_deref(), Some("2 edge-1"));
    // After the intermediaries the request already passed.
    let seen = via_seen(&named, Some("1.0 fred, 1.1 p.example"), false)
        .await
        .unwrap();
    assert_eq!(seen.as_deref(), Some("1.0 fred, 1.1 p.example, 1.1 edge-1"));
}

#[tokio::test]
async fn an_unnamed_proxy_adds_no_via() {
    let Some(seen) = via_seen(&["protocol: auto"], None, false).await else {
        return;
    };
    assert_eq!(seen, None);
    let seen = via_seen(&["protocol: auto"], Some("1.0 fred"), false)
        .await
        .unwrap();
    assert_eq!(seen.as_deref(), Some("1.0 fred"));
}

/// The response head curl printed for `GET url` with `args` before it, lower-cased;
/// `None` when curl is not installed.
async fn response_head(args: &[&str], url: &str) -> Option<String> {
    let mut all = vec!["-s", "-D", "-", "-o", "/dev/null"];
    all.extend_from_slice(args);
    all.push(url);
    let out = tools::curl(&all, Duration::from_secs(10)).await?;
    Some(out.stdout_text().to_ascii_lowercase())
}

#[tokio::test]
async fn a_named_proxy_adds_itself_to_the_answer_after_the_upstream_protocol() {
    let up = Upstream::echo("up");
    let yaml = yaml::config(
        &[yaml::listener(
            "l",
            "up",
            &["protocol: auto", "via: edge-1"],
        )],
        &[yaml::cluster("up", &[up.addr], &[])],
    );
    let mut proxy = TestServer::start(&yaml, Registry::default());
    let url = format!("http://{}/answer", proxy.addr("l"));
    let h1 = response_head(&[], &url).await;
    let h2 = response_head(&["--http2-prior-knowledge"], &url).await;
    proxy.stop();
    let (Some(h1), Some(h2)) = (h1, h2) else {
        return;
    };
    // The upstream answered over HTTP/1.1 both times.
    assert!(h1.starts_with("http/1.1 200"), "{h1}");
    assert!(h1.contains("\r\nvia: 1.1 edge-1\r\n"), "{h1}");
    assert!(h2.starts_with("http/2 200"), "{h2}");
    assert!(h2.contains("\r\nvia: 1.1 edge-1\r\n"), "{h2}");
}

#[tokio::test]
async fn a_request_that_already_names_the_proxy_is_answered_508_and_not_sent() {
    let up = Upstream::echo("up");
    let yaml = yaml::config(
        &[yaml::listener("l", "up", &["via: edge-1"])],
        &[yaml::cluster("up", &[up.addr], &[])],
    );
    let mut proxy = TestServer::start(&yaml, Registry::default());
    let url = format!("http://{}/loop", proxy.addr("l"));
    let looped = response_head(&["-H", "Via: 1.0 fred, 1.1 Edge-1 (gateway)"], &url).await;
    let passing = response_head(&["-H", "Via: 1.1 edge-10, 1.1 p (edge-1)"], &url).await;
    proxy.stop();
    let (Some(looped), Some(passing)) = (looped, passing) else {
        return;
    };
    assert!(looped.starts_with("http/1.1 508"), "{looped}");
    assert!(
        looped.contains("x-proxy-error: forwarding_loop"),
        "{looped}"
    );
    // Only the request that did not name the proxy reached the upstream.
    assert!(passing.starts_with("http/1.1 200"), "{passing}");
    assert_eq!(up.hits(), 1);
}

/// A listener whose cluster is the listener itself: the request's second pass finds
/// the `Via` its first pass added and answers 508, and the first pass hands that
/// answer back, instead of the request going round until connections run out.
#[tokio::test]
async fn a_proxy_that_forwards_to_itself_stops_at_the_second_pass() {
    let addr = ports::free_addr();
    let listener =
        yaml::listener("l", "itself", &["via: edge-1"]).replace("127.0.0.1:0", &addr.to_string());
    let yaml = yaml::config(&[listener], &[yaml::cluster("itself", &[addr], &[])]);
    let mut proxy = TestServer::start(&yaml, Registry::default());
    let url = format!("http://{addr}/round");
    let head = response_head(&[], &url).await;
    // A comment the client leaves open does not hide the entry the first pass adds.
    let hiding = response_head(&["-H", "Via: 1.1 client (open"], &url).await;
    proxy.stop();
    let (Some(head), Some(hiding)) = (head, hiding) else {
        return;
    };
    assert!(head.starts_with("http/1.1 508"), "{head}");
    assert!(head.contains("x-proxy-error: forwarding_loop"), "{head}");
    assert!(head.contains("\r\nvia: 1.1 edge-1\r\n"), "{head}");
    assert!(hiding.starts_with("http/1.1 508"), "{hiding}");
}
