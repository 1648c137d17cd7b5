//! Zone (LDC) routing end to end on real sockets: two proxies (data centres dc1 and
//! dc2 of city hz), a third data centre (dc3, city sh) stood in for by a plain
//! upstream. First request to a random zone, uid mapping, the zone cookie set and
//! followed, the cross-data-centre forward, and the failover order when a zone's
//! endpoints fail (same data centre, then same city, then another city).

#![allow(clippy::unwrap_used)]

use crate::common_resilience;

use std::time::Duration;

use bytes::Bytes;
use common_resilience::{get, listener, load_error, prometheus, request, start, Upstream, LIMIT};
use http::Method;
use proxy_test_support::{client, closed_port, eventually_async, free_addr};

/// Proxy B: data centre dc2, serving zone z3 from `u3`.
fn dc2_yaml(u3: &Upstream) -> String {
    let filters = r#"[{typed: zone_routing, config: {
        local_data_centre: dc2, local_cluster: app,
        zones: [{name: z1, data_centre: dc1, city: hz}, {name: z2, data_centre: dc1, city: hz},
                {name: z3, data_centre: dc2, city: hz}, {name: z4, data_centre: dc3, city: sh}],
        remote_clusters: {dc1: dc1_proxies, dc3: dc3_proxies}}}]"#;
    format!(
        "listeners:\n{}clusters:\n  - {{name: app, lb: zone_aware, endpoints: [{{address: \"{}\", metadata: {{zone: z3}}}}]}}\n  - {{name: dc1_proxies, endpoints: [\"127.0.0.1:1\"]}}\n  - {{name: dc3_proxies, endpoints: [\"127.0.0.1:1\"]}}\n",
        listener("main", filters, "app"),
        u3.addr
    )
}

/// Proxy A: data centre dc1 (zones z1, z2), forwarding z3 to proxy B and z4 to `u4`.
fn dc1_yaml(
    u1: &Upstream,
    u2: &Upstream,
    dc2: std::net::SocketAddr,
    u4: &Upstream,
    admin: std::net::SocketAddr,
) -> String {
    let filters = r#"[{typed: zone_routing, config: {
        local_data_centre: dc1, local_cluster: app,
        zones: [{name: z1, data_centre: dc1, city: hz, weight: 1}, {name: z2, data_centre: dc1, city: hz, weight: 1},
                {name: z3, data_centre: dc2, city: hz, weight: 1}, {name: z4, data_centre: dc3, city: sh, weight: 1}],
        remote_clusters: {dc2: dc2_proxies, dc3: dc3_proxies},
        uid: {source: {header: x-uid}, modulus: 100,
              ranges: [{from: 0, to: 25, zone: z1}, {from: 25, to: 50, zone: z2},
                       {from: 50, to: 75, zone: z3}, {from: 75, to: 100, zone: z4}]},
        cookie: zone}}]"#;
    let hc = "{typed: health_check, config: {interval: 50ms, timeout: 200ms, unhealthy_threshold: 1, healthy_threshold: 1, probe: {http: {path: /healthz}}}}";
    let tcp_hc = "{typed: health_check, config: {interval: 50ms, timeout: 200ms, unhealthy_threshold: 1, healthy_threshold: 1, probe: tcp}}";
    format!(
        "admin: {{address: \"{admin}\"}}\nlisteners:\n{}clusters:\n  - name: app\n    lb: zone_aware\n    extensions: [{hc}]\n    endpoints: [{{address: \"{}\", metadata: {{zone: z1}}}}, {{address: \"{}\", metadata: {{zone: z2}}}}]\n  - {{name: dc2_proxies, extensions: [{tcp_hc}], endpoints: [\"{dc2}\"]}}\n  - {{name: dc3_proxies, endpoints: [\"{}\"]}}\n",
        listener("main", filters, "app"),
        u1.addr,
        u2.addr,
        u4.addr
    )
}

fn cookie_zone(set_cookie: Option<&str>) -> Option<String> {
    let v = set_cookie?;
    assert!(v.contains("Path=/"), "{v}");
    assert!(v.contains("HttpOnly"), "{v}");
    let first = v.split(';').next()?;
    first.strip_prefix("zone=").map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_cookie_uid_forward_and_failover() {
    let (u1, u2, u3, u4) = (
        Upstream::start("u1"),
        Upstream::start("u2"),
        Upstream::start("u3"),
        Upstream::start("u4"),
    );
    let mut dc2 = start(&dc2_yaml(&u3));
    let dc2_addr = dc2.addr("main");
    let admin = free_addr();
    let dc1 = start(&dc1_yaml(&u1, &u2, dc2_addr, &u4, admin));
    let a = dc1.addr("main");
    let expected = |zone: &str| match zone {
        "z1" => "u1",
        "z2" => "u2",
        "z3" => "u3",
        _ => "u4",
    };

    tokio::time::timeout(LIMIT, async {
        // First requests: neither uid nor cookie -> a random (weighted) zone, cookie set.
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..40 {
            let r = get(a, "/first", &[]).await;
            assert_eq!(r.status, 200, "{}", r.head);
            let zone = cookie_zone(r.header("set-cookie")).expect("zone cookie set");
            assert_eq!(
                r.upstream(),
                expected(&zone),
                "zone {zone} served by {}",
                r.upstream()
            );
            seen.insert(zone);
        }
        assert!(seen.len() >= 3, "random zones over 40 requests: {seen:?}");

        // uid 10 -> shard 10 -> z1; the cookie says z1.
        let r = get(a, "/", &[("x-uid", "10")]).await;
        assert_eq!((r.status, r.upstream()), (200, "u1"));
        assert_eq!(cookie_zone(r.header("set-cookie")).as_deref(), Some("z1"));
        // The cookie is followed, and not set again when it is already right.
        for _ in 0..5 {
            let r = get(a, "/", &[("cookie", "zone=z2")]).await;
            assert_eq!(r.upstream(), "u2");
            assert!(r.header("set-cookie").is_none(), "{}", r.head);
        }
        // A uid wins over a stale cookie; the cookie is corrected.
        let r = get(a, "/", &[("x-uid", "1030"), ("cookie", "zone=z1")]).await;
        assert_eq!(r.upstream(), "u2");
        assert_eq!(cookie_zone(r.header("set-cookie")).as_deref(), Some("z2"));

        // uid 60 -> z3 in dc2: forwarded to proxy B, which serves it locally, without
        // setting a cookie itself; A sets it.
        let r = get(a, "/", &[("x-uid", "60")]).await;
        assert_eq!((r.status, r.upstream()), (200, "u3"), "{}", r.head);
        assert_eq!(r.headers("set-cookie").len(), 1, "{}", r.head);
        assert_eq!(cookie_zone(r.header("set-cookie")).as_deref(), Some("z3"));
        assert!(
            !r.body.to_ascii_lowercase().contains("x-proxy-zone"),
            "B strips the forward header: {}",
            r.body
        );
        // uid 99 -> z4 in dc3 (another city): forwarded with the zone in the header.
        let r = get(a, "/", &[("x-uid", "99")]).await;
        assert_eq!(r.upstream(), "u4");
        assert!(
            r.body.to_ascii_lowercase().contains("x-proxy-zone: z4"),
            "{}",
            r.body
        );

        // Failover. z1's endpoint fails its health checks -> z2 (same data centre).
        u1.set_health(503);
        assert!(
            eventually_async(Duration::from_secs(5), || async {
                get(a, "/", &[("x-uid", "10")]).await.upstream() == "u2"
            })
            .await,
            "z1 fails over to z2"
        );
        let r = get(a, "/", &[("x-uid", "10")]).await;
        assert_eq!(
            cookie_zone(r.header("set-cookie")).as_deref(),
            Some("z1"),
            "the cookie keeps the home zone"
        );
        // z2 fails too -> z3 in dc2 (same city), through proxy B.
        u2.set_health(503);
        assert!(
            eventually_async(Duration::from_secs(5), || async {
                get(a, "/", &[("x-uid", "10")]).await.upstream() == "u3"
            })
            .await,
            "dc1 down: fail over to dc2 in the same city"
        );
        // dc2's proxy goes away -> z4 in another city.
        dc2.stop();
        assert!(
            eventually_async(Duration::from_secs(5), || async {
                get(a, "/", &[("x-uid", "10")]).await.upstream() == "u4"
            })
            .await,
            "the city down: fail over to another city"
        );
        // z1 recovers: back home.
        u1.set_health(200);
        assert!(
            eventually_async(Duration::from_secs(5), || async {
                get(a, "/", &[("x-uid", "10")]).await.upstream() == "u1"
            })
            .await,
            "z1 back"
        );

        let text = prometheus(admin).await;
        for step in ["same_data_centre", "same_city", "other_city"] {
            let line = text
                .lines()
                .find(|l| {
                    l.starts_with(&format!("proxy_lb_zone_failovers_total{{step=\"{step}\"}}"))
                })
                .unwrap_or_else(|| panic!("no failover metric for {step}:\n{text}"));
            let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            assert!(n >= 1, "{line}");
        }
        assert!(
            text.contains("proxy_lb_zone_decisions_total{source=\"uid\"}"),
            "{text}"
        );
        assert!(
            text.contains("proxy_lb_health_checks_total{cluster=\"app\""),
            "{text}"
        );
    })
    .await
    .unwrap();
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {name}:\n{text}"))
}

/// The same over HTTP/2: a request whose HEADERS end the stream has an empty body, so
/// a connect failure in its zone moves it to the next zone at once, as on HTTP/1.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_without_a_body_fail_over_at_once() {
    let u2 = Upstream::start("u2");
    let dead1 = closed_port();
    let filters = r#"[{typed: zone_routing, config: {
        local_data_centre: dc1, local_cluster: app,
        zones: [{name: z1, data_centre: dc1, city: hz}, {name: z2, data_centre: dc1, city: hz}]}}]"#;
    let yaml = format!(
        "listeners:\n{}clusters:\n  - name: app\n    lb: zone_aware\n    endpoints: [{{address: \"{dead1}\", metadata: {{zone: z1}}}}, {{address: \"{}\", metadata: {{zone: z2}}}}]\n",
        listener("main", filters, "app"),
        u2.addr
    );
    let proxy = start(&yaml);
    let a = proxy.addr("main");
    tokio::time::timeout(LIMIT, async {
        for i in 0..10 {
            let method = if i % 2 == 0 {
                Method::GET
            } else {
                Method::DELETE
            };
            let req = client::build(a, method, "/", &[("cookie", "zone=z1")], Bytes::new())
                .expect("request");
            let r = client::send_h2c(a, req).await.expect("h2c exchange");
            assert_eq!(r.status, 200, "request {i}: {:?}", r.headers);
            assert_eq!(r.header("x-upstream"), Some("u2"), "request {i}");
        }
    })
    .await
    .unwrap();
}

/// A zone whose endpoints refuse connections, with no health check to notice: every
/// request of that zone is sent to the next zone of its failover chain at once (no
/// 503), and after repeated failures the zone is held out so requests go straight on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_move_requests_to_the_next_zone_without_health_checks() {
    let (u2, u3) = (Upstream::start("u2"), Upstream::start("u3"));
    let (dead1, dead2) = (closed_port(), closed_port());
    let admin = free_addr();
    let filters = r#"[{typed: zone_routing, config: {
        local_data_centre: dc1, local_cluster: app,
        zones: [{name: z1, data_centre: dc1, city: hz}, {name: z2, data_centre: dc1, city: hz},
                {name: z3, data_centre: dc2, city: hz}, {name: z4, data_centre: dc1, city: hz}],
        remote_clusters: {dc2: dc2_proxies}}}]"#;
    let yaml = format!(
        "admin: {{address: \"{admin}\"}}\nlisteners:\n{}clusters:\n  - name: app\n    lb: zone_aware\n    endpoints: [{{address: \"{dead1}\", metadata: {{zone: z1}}}}, {{address: \"{}\", metadata: {{zone: z2}}}}, {{address: \"{dead2}\", metadata: {{zone: z4}}}}]\n  - {{name: dc2_proxies, endpoints: [\"{}\"]}}\n",
        listener("main", filters, "app"),
        u2.addr,
        u3.addr
    );
    let proxy = start(&yaml);
    let a = proxy.addr("main");
    tokio::time::timeout(LIMIT, async {
        // z1 is dead: its requests are served by z2, the next zone of its data centre.
        for i in 0..30 {
            let method = if i % 2 == 0 { "GET" } else { "DELETE" };
            let r = request(a, method, "/", &[("cookie", "zone=z1")]).await;
            assert_eq!(
                (r.status, r.upstream()),
                (200, "u2"),
                "request {i}: {}",
                r.head
            );
            assert!(
                r.header("set-cookie").is_none(),
                "the home zone stays z1: {}",
                r.head
            );
        }
        let text = prometheus(admin).await;
        assert_eq!(
            metric(
                &text,
                "proxy_lb_zone_failovers_total{step=\"same_data_centre\"}"
            ),
            30,
            "{text}"
        );
        assert_eq!(
            metric(&text, "proxy_lb_zone_unavailable_total"),
            0,
            "{text}"
        );
        let retries = metric(&text, "proxy_lb_zone_connect_retries_total");
        assert!(
            (3..30).contains(&retries),
            "z1 is held out after repeated connect failures: {retries} retries"
        );
        // z4 is dead too and not yet known to be: a z4 request tries z4, then the
        // zones of its chain (z1 held out, so z2), never answering 503.
        for i in 0..10 {
            let r = get(a, "/", &[("cookie", "zone=z4")]).await;
            assert_eq!(
                (r.status, r.upstream()),
                (200, "u2"),
                "request {i}: {}",
                r.head
            );
        }
        // z2 goes away as well: the chain goes on to z3 in dc2 (same city).
        drop(u2);
        for i in 0..10 {
            let r = get(a, "/", &[("cookie", "zone=z1")]).await;
            assert_eq!(
                (r.status, r.upstream()),
                (200, "u3"),
                "request {i}: {}",
                r.head
            );
            assert!(
                r.body.to_ascii_lowercase().contains("x-proxy-zone: z3"),
                "{}",
                r.body
            );
        }
        let text = prometheus(admin).await;
        assert_eq!(
            metric(&text, "proxy_lb_zone_failovers_total{step=\"same_city\"}"),
            10,
            "{text}"
        );
        assert_eq!(
            metric(&text, "proxy_lb_zone_unavailable_total"),
            0,
            "{text}"
        );
    })
    .await
    .unwrap();
}

#[test]
fn unknown_zones_and_bad_values_are_refused_naming_the_field() {
    let up = Upstream::start("u");
    let yaml = |zone_cfg: &str| {
        format!(
            "listeners:\n{}clusters:\n  - {{name: app, lb: zone_aware, endpoints: [{{address: \"{}\", metadata: {{zone: z1}}}}]}}\n",
            listener("main", &format!("[{{typed: zone_routing, config: {zone_cfg}}}]"), "app"),
            up.addr
        )
    };
    let base = "local_data_centre: dc1, local_cluster: app, zones: [{name: z1, data_centre: dc1, city: hz}]";
    let e = load_error(&yaml(&format!("{{{base}, uid: {{source: {{header: x-uid}}, ranges: [{{from: 0, to: 50, zone: nowhere}}]}}}}")));
    assert!(
        e.contains("listeners[0].http_filters[0].config.uid.ranges[0].zone: unknown zone nowhere"),
        "{e}"
    );
    let e = load_error(&yaml(&format!(
        "{{{base}, uid: {{source: {{header: x-uid, cookie: uid}}, ranges: []}}}}"
    )));
    assert!(
        e.contains("listeners[0].http_filters[0].config.uid.source"),
        "{e}"
    );
    let e = load_error(&yaml(&format!("{{{base}, forward_header: \"a b\"}}")));
    assert!(
        e.contains("listeners[0].http_filters[0].config.forward_header: "),
        "{e}"
    );
    let e = load_error(&yaml("{local_data_centre: dc1, local_cluster: app, zones: [{name: z1, data_centre: dc1, city: hz, weight: 0}]}"));
    assert!(
        e.contains("listeners[0].http_filters[0].config.zones[0].weight"),
        "{e}"
    );
    let e = load_error(&yaml("{local_data_centre: dc1, local_cluster: nope, zones: [{name: z1, data_centre: dc1, city: hz}]}"));
    assert!(e.contains("local_cluster: unknown cluster nope"), "{e}");
    let e = load_error(&yaml("{local_data_centre: dc1, local_cluster: app, zones: [{name: z1, data_centre: dc1, city: hz}, {name: z9, data_centre: dc1, city: hz}]}"));
    assert!(e.contains("zones[1]: local zone z9 has no endpoint"), "{e}");
    let e = load_error(&yaml("{local_data_centre: dc1, local_cluster: app, zones: [{name: z1, data_centre: dc1, city: hz}, {name: z2, data_centre: dc2, city: hz}]}"));
    assert!(e.contains("remote_clusters.dc2"), "{e}");
    let e = load_error(&yaml(&format!("{{{base}, bogus: 1}}")));
    assert!(e.contains("bogus"), "{e}");
    assert_eq!(load_error(&yaml(&format!("{{{base}}}"))), "<accepted>");
    let e = load_error(&format!(
        "listeners:\n{}clusters:\n  - {{name: app, endpoints: [{{address: \"{}\", metadata: {{zone: z7}}}}]}}\n",
        listener("main", &format!("[{{typed: zone_routing, config: {{{base}}}}}]"), "app"),
        up.addr
    ));
    assert!(
        e.contains("local_cluster: endpoint") && e.contains("metadata.zone z7"),
        "{e}"
    );
    // The balancer's own config.
    let e = load_error(&format!(
        "listeners:\n{}clusters:\n  - {{name: app, lb: {{typed: zone_aware, config: {{inner: nope}}}}, endpoints: [\"{}\"]}}\n",
        listener("main", "[]", "app"),
        up.addr
    ));
    assert!(
        e.contains("clusters[0].lb.config.inner.typed: unknown inner policy"),
        "{e}"
    );
}
