//! `Via` (RFC 9110 7.6.3), with curl over HTTP/1.1 and h2c: a listener that names the
//! proxy (`via: edge-1`) adds `<protocol> edge-1` to every request it forwards, after
//! the entries the request brought; one that does not adds nothing.

// Test helpers: a failed setup should stop the test loudly.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use proxy_core::Registry;
use proxy_test_support::{tools, upstream::Echoed, yaml, TestServer, Upstream};

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
