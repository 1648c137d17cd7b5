//! Local rate limiting through a real proxy: 429 with `retry-after` past the rate,
//! separate buckets per header key and per source IP, requests without the key
//! untouched by that descriptor; bad rates refused naming the field; the keys gauge
//! across reloads and each `overflow` policy with 2,000 first-time keys.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use common::{config, listener, start, try_start, upstream};
use proxy_test_support::{
    client::{self, get, H1Client},
    closed_port, free_addr, prometheus, with_timeout, TestServer,
};

#[tokio::test]
async fn shared_bucket_answers_429_with_retry_after() {
    with_timeout(Duration::from_secs(30), async {
        let up = upstream("backend", Duration::ZERO);
        let proxy = start(&config(
            &[listener(
                "edge",
                "[{typed: local_rate_limit, config: {rate: {requests: 3, per: 1m}}}]",
                "b",
            )],
            &[("b", up.addr)],
        ));
        let addr = proxy.addr("edge");
        for _ in 0..3 {
            assert_eq!(get(addr, "/", &[]).await.status, 200);
        }
        let limited = get(addr, "/", &[]).await;
        assert_eq!(limited.status, 429);
        assert_eq!(limited.headers["x-proxy-error"], "rate_limited");
        let retry: u64 = limited.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=20).contains(&retry), "retry-after {retry}");
        assert_eq!(up.hits(), 3);
    })
    .await;
}

#[tokio::test]
async fn keyed_buckets_per_header_and_source_ip() {
    with_timeout(Duration::from_secs(30), async {
        let up = upstream("backend", Duration::ZERO);
        let rules = r#"{descriptors: [
          {key: {header: x-api-key}, rate: {requests: 2, per: 1m}},
          {key: source_ip, rate: {requests: 6, per: 1m}}
        ]}"#;
        let proxy = start(&config(
            &[listener(
                "edge",
                &format!("[{{typed: local_rate_limit, config: {rules}}}]"),
                "b",
            )],
            &[("b", up.addr)],
        ));
        let addr = proxy.addr("edge");
        let status = |k: &'static str| async move {
            get(addr, "/", &[("x-api-key", k)]).await.status.as_u16()
        };
        assert_eq!(status("alice").await, 200);
        assert_eq!(status("alice").await, 200);
        assert_eq!(status("alice").await, 429, "alice's third");
        assert_eq!(status("bob").await, 200, "bob has his own bucket");
        // Without the header only the source-IP bucket applies: 6 per minute in all,
        // 3 used so far (alice's limited request stopped at her key's bucket).
        assert_eq!(get(addr, "/", &[]).await.status, 200);
        let mut last = 200;
        for _ in 0..3 {
            last = get(addr, "/", &[]).await.status.as_u16();
        }
        assert_eq!(last, 429, "the source IP bucket holds");
    })
    .await;
}

#[test]
fn bad_rates_are_refused() {
    let up = closed_port();
    for (rules, field) in [
        (
            "{rate: {requests: 0, per: 1s}}",
            "listeners[0].http_filters[0].config.rate.requests",
        ),
        (
            "{rate: {requests: 10, per: forever}}",
            "listeners[0].http_filters[0].config.rate.per",
        ),
        (
            "{descriptors: [{key: {header: 'no way'}, rate: {requests: 1, per: 1s}}]}",
            "listeners[0].http_filters[0].config.descriptors[0].key.header",
        ),
        (
            "{descriptors: [{key: cookie, rate: {requests: 1, per: 1s}}]}",
            "listeners[0].http_filters[0].config.descriptors[0].key",
        ),
        (
            "{}",
            "listeners[0].http_filters[0].config.rate: set rate, descriptors or both",
        ),
    ] {
        let filters = format!("[{{typed: local_rate_limit, config: {rules}}}]");
        let err = try_start(&config(&[listener("e", &filters, "b")], &[("b", up)]))
            .err()
            .unwrap_or_else(|| panic!("{rules} accepted"));
        assert!(err.contains(field), "{rules}: {err}");
    }
}

#[tokio::test]
async fn per_route_limits_through_route_filters() {
    with_timeout(Duration::from_secs(30), async {
        let up = upstream("backend", Duration::ZERO);
        let yaml = format!(
            r#"runtime: {{ worker_threads: 1 }}
listeners:
  - name: edge
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - name: search
            match: {{ path: {{ prefix: /search }} }}
            cluster: b
            filters: [{{typed: local_rate_limit, config: {{rate: {{requests: 1, per: 1m}}}}}}]
          - name: rest
            match: {{ path: {{ prefix: / }} }}
            cluster: b
            filters: [{{typed: local_rate_limit, config: {{rate: {{requests: 3, per: 1m}}}}}}]
clusters:
  - name: b
    endpoints: ["{}"]
"#,
            up.addr
        );
        let proxy = start(&yaml);
        let addr = proxy.addr("edge");
        assert_eq!(get(addr, "/search?q=1", &[]).await.status, 200);
        assert_eq!(get(addr, "/search?q=2", &[]).await.status, 429);
        for _ in 0..3 {
            assert_eq!(
                get(addr, "/items", &[]).await.status,
                200,
                "the other route's own bucket"
            );
        }
        assert_eq!(get(addr, "/items", &[]).await.status, 429);
    })
    .await;
}

#[tokio::test]
async fn many_keys_stay_bounded() {
    with_timeout(Duration::from_secs(60), async {
        let up = upstream("backend", Duration::ZERO);
        let admin = free_addr();
        let rules = "{name: keys, descriptors: [{key: {header: x-api-key}, rate: {requests: 1, per: 1h}, max_keys: 64, overflow: shared_bucket}]}";
        let yaml = format!(
            "admin: {{ address: \"{admin}\" }}\n{}",
            config(
                &[listener("edge", &format!("[{{typed: local_rate_limit, config: {rules}}}]"), "b")],
                &[("b", up.addr)],
            )
        );
        let proxy = start(&yaml);
        let addr = proxy.addr("edge");
        // One HTTP/1.1 connection, 600 distinct keys: an attacker rotating keys.
        let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let (mut h1, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut limited = 0;
        for i in 0..600 {
            let req = http::Request::get("/")
                .header("host", "a")
                .header("x-api-key", format!("key-{i}"))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            let resp = h1.send_request(req).await.unwrap();
            if resp.status() == 429 {
                limited += 1;
            }
            let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
        }
        let text = client::get(admin, "/stats/prometheus", &[]).await.text();
        let keys = prometheus::sample(&text, "proxy_filters_local_rate_limit_keys{filter=\"keys\"}").unwrap();
        let overflow = prometheus::sample(&text, "proxy_filters_local_rate_limit_overflow_total{filter=\"keys\"}").unwrap();
        assert!(keys <= 64.0, "{keys} keys tracked");
        assert!(overflow > 0.0, "{text}");
        // Keys past the table share one overflow bucket (1 per hour): they are limited.
        assert!(limited >= 600 - 64 - 1, "{limited} limited");
    })
    .await;
}

#[tokio::test]
async fn a_reload_keeps_the_buckets_of_an_unchanged_named_limiter() {
    with_timeout(Duration::from_secs(30), async {
        let up = upstream("backend", Duration::ZERO);
        let yaml = |extra: &str| {
            config(
                &[listener(
                    "edge",
                    &format!("[{{typed: local_rate_limit, config: {{name: api, rate: {{requests: 2, per: 1h}}}}}}{extra}]"),
                    "b",
                )],
                &[("b", up.addr)],
            )
        };
        let proxy = start(&yaml(""));
        let addr = proxy.addr("edge");
        assert_eq!(get(addr, "/", &[]).await.status, 200);
        assert_eq!(get(addr, "/", &[]).await.status, 200);
        assert_eq!(get(addr, "/", &[]).await.status, 429);
        // Another filter added, the limiter's section unchanged: still limited.
        let reloaded = yaml(", {typed: header_rewrite, config: {request: {set: [{name: x-v, value: '2'}]}}}");
        proxy.reload(&reloaded).unwrap();
        let got = get(addr, "/", &[]).await;
        assert_eq!(got.status, 429);
        let changed = yaml("").replace("requests: 2", "requests: 3");
        proxy.reload(&changed).unwrap();
        assert_eq!(get(addr, "/", &[]).await.status, 200, "a changed rate starts afresh");
    })
    .await;
}

/// A proxy with an admin listener and one `local_rate_limit` named `name` on listener
/// `edge`, with `filters` after it (a YAML flow list's tail, e.g. `, {typed: ...}`).
fn keyed_yaml(
    admin: std::net::SocketAddr,
    up: std::net::SocketAddr,
    rules: &str,
    filters: &str,
) -> String {
    format!(
        "admin: {{ address: \"{admin}\" }}\n{}",
        config(
            &[listener(
                "edge",
                &format!("[{{typed: local_rate_limit, config: {rules}}}{filters}]"),
                "b"
            )],
            &[("b", up)],
        )
    )
}

/// A Prometheus sample of the proxy at `admin` for the filter `name`.
async fn stat(admin: std::net::SocketAddr, family: &str, name: &str) -> f64 {
    let text = client::get(admin, "/stats/prometheus", &[]).await.text();
    prometheus::sample(&text, &format!("{family}{{filter=\"{name}\"}}"))
        .unwrap_or_else(|| panic!("{family}: {text}"))
}

/// Sends one request with `x-api-key: key` on `c`.
async fn with_key(c: &mut H1Client, key: &str) -> client::Response {
    c.request(
        http::Method::GET,
        "/",
        &[("x-api-key", key)],
        bytes::Bytes::new(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn keys_gauge_counts_the_live_limiters_across_reloads() {
    with_timeout(Duration::from_secs(60), async {
        let up = upstream("backend", Duration::ZERO);
        let admin = free_addr();
        let rules = |requests: u32| {
            format!("{{name: g, descriptors: [{{key: {{header: x-api-key}}, rate: {{requests: {requests}, per: 1h}}, max_keys: 100}}]}}")
        };
        let proxy = start(&keyed_yaml(admin, up.addr, &rules(1), ""));
        let addr = proxy.addr("edge");
        let mut c = H1Client::new(addr);
        // An idle keep-alive connection holds the stack it last used across reloads.
        let mut idle = H1Client::new(addr);
        for i in 0..400 {
            with_key(&mut c, &format!("first-{i}")).await;
        }
        assert_eq!(with_key(&mut idle, "idle").await.status, 200);
        assert_eq!(stat(admin, "proxy_filters_local_rate_limit_keys", "g").await, 100.0, "at most max_keys");
        // Three reloads, each replacing the limiter (its rate changed): only the
        // running limiter's keys count.
        for (round, requests) in [2u32, 3, 4].into_iter().enumerate() {
            proxy.reload(&keyed_yaml(admin, up.addr, &rules(requests), "")).unwrap();
            assert_eq!(stat(admin, "proxy_filters_local_rate_limit_keys", "g").await, 0.0, "round {round}: replaced");
            // Few keys: none is evicted from its shard (of 6 or 7).
            for i in 0..10 {
                assert_eq!(with_key(&mut c, &format!("r{round}-{i}")).await.status, 200);
            }
            assert_eq!(stat(admin, "proxy_filters_local_rate_limit_keys", "g").await, 10.0, "round {round}");
        }
        // A reload that keeps the limiter (its section unchanged) keeps its keys.
        let kept = keyed_yaml(admin, up.addr, &rules(4), ", {typed: header_rewrite, config: {request: {set: [{name: x-v, value: '2'}]}}}");
        proxy.reload(&kept).unwrap();
        assert_eq!(stat(admin, "proxy_filters_local_rate_limit_keys", "g").await, 10.0, "kept");
        for i in 0..3 {
            with_key(&mut c, &format!("kept-{i}")).await;
        }
        assert_eq!(stat(admin, "proxy_filters_local_rate_limit_keys", "g").await, 13.0);
        // A rejected reload changes nothing.
        assert!(proxy.reload(&keyed_yaml(admin, up.addr, &rules(5), ", {typed: nope}")).is_err());
        assert_eq!(stat(admin, "proxy_filters_local_rate_limit_keys", "g").await, 13.0, "rejected");
        drop(idle);
    })
    .await;
}

/// 2,000 first-time keys (each once, on one connection) against `max_keys: 100`, a
/// hot key used every 5 keys and a rate of 1 per hour: the statuses by key index, the
/// hot key's, and the running proxy.
async fn first_time_keys(
    policy: &str,
) -> (
    Vec<client::Response>,
    Vec<u16>,
    TestServer,
    std::net::SocketAddr,
    Upstream,
) {
    let up = upstream("backend", Duration::ZERO);
    let admin = free_addr();
    let rules = format!("{{name: {policy}, descriptors: [{{key: {{header: x-api-key}}, rate: {{requests: 1, per: 1h}}, max_keys: 100, overflow: {policy}}}]}}");
    let proxy = start(&keyed_yaml(admin, up.addr, &rules, ""));
    let mut c = H1Client::new(proxy.addr("edge"));
    let mut hot = vec![with_key(&mut c, "hot").await.status.as_u16()];
    let mut got = Vec::new();
    for i in 0..2000 {
        got.push(with_key(&mut c, &format!("key-{i}")).await);
        if i % 5 == 4 {
            hot.push(with_key(&mut c, "hot").await.status.as_u16());
        }
    }
    (got, hot, proxy, admin, up)
}

use proxy_test_support::Upstream;

#[tokio::test]
async fn overflow_shared_bucket_makes_new_keys_share_one_bucket() {
    with_timeout(Duration::from_secs(120), async {
        let (got, _, _proxy, admin, _up) = first_time_keys("shared_bucket").await;
        let ok = got.iter().filter(|r| r.status == 200).count();
        // The hot key holds one slot: 99 keys have their own bucket, and the one
        // overflow bucket (1 per hour) admits one more; everyone else shares it.
        assert_eq!(ok, 99 + 1, "admitted");
        for r in got.iter().filter(|r| r.status != 200) {
            assert_eq!(r.status, 429);
            assert_eq!(r.headers["x-proxy-error"], "rate_limited");
        }
        assert_eq!(
            stat(
                admin,
                "proxy_filters_local_rate_limit_overflow_total",
                "shared_bucket"
            )
            .await,
            1901.0
        );
        assert_eq!(
            stat(
                admin,
                "proxy_filters_local_rate_limit_keys",
                "shared_bucket"
            )
            .await,
            100.0
        );
    })
    .await;
}

#[tokio::test]
async fn overflow_reject_refuses_new_keys_naming_the_reason() {
    with_timeout(Duration::from_secs(120), async {
        let (got, _, _proxy, admin, _up) = first_time_keys("reject").await;
        let ok = got.iter().filter(|r| r.status == 200).count();
        assert_eq!(ok, 99, "the keys with room (the hot key holds one slot)");
        for r in got.iter().filter(|r| r.status != 200) {
            assert_eq!(r.status, 429);
            assert_eq!(r.headers["x-proxy-error"], "rate_limit_keys_full");
            assert_eq!(r.headers["retry-after"], "1");
        }
        assert_eq!(
            stat(
                admin,
                "proxy_filters_local_rate_limit_overflow_total",
                "reject"
            )
            .await,
            1901.0
        );
        assert_eq!(
            stat(admin, "proxy_filters_local_rate_limit_keys", "reject").await,
            100.0
        );
    })
    .await;
}

#[tokio::test]
async fn overflow_evict_lru_gives_new_keys_their_own_bucket() {
    with_timeout(Duration::from_secs(120), async {
        let (got, hot, proxy, admin, _up) = first_time_keys("evict_lru").await;
        assert!(
            got.iter().all(|r| r.status == 200),
            "every first-time key has its own bucket"
        );
        assert_eq!(hot[0], 200);
        assert!(
            hot[1..].iter().all(|s| *s == 429),
            "the hot key, used often, is never evicted: {hot:?}"
        );
        assert_eq!(
            stat(admin, "proxy_filters_local_rate_limit_keys", "evict_lru").await,
            100.0
        );
        assert_eq!(
            stat(
                admin,
                "proxy_filters_local_rate_limit_evictions_total",
                "evict_lru"
            )
            .await,
            1901.0
        );
        let mut c = H1Client::new(proxy.addr("edge"));
        // The most recent keys are still tracked (their bucket is used up) ...
        for i in 1995..2000 {
            assert_eq!(
                with_key(&mut c, &format!("key-{i}")).await.status,
                429,
                "key-{i}"
            );
        }
        // ... the least recently used went, and start afresh when seen again.
        for i in 0..5 {
            assert_eq!(
                with_key(&mut c, &format!("key-{i}")).await.status,
                200,
                "key-{i}"
            );
            assert_eq!(
                with_key(&mut c, &format!("key-{i}")).await.status,
                429,
                "key-{i} again"
            );
        }
    })
    .await;
}
