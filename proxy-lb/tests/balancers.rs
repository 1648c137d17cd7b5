//! The balancers inside a running proxy on 127.0.0.1: registered by name, configured
//! from YAML, picking among real upstreams; hash keys stick to one upstream, weights
//! hold, a reload that removes an endpoint moves only its keys, and bad sections are
//! refused naming the field.

#![allow(clippy::unwrap_used)]

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use proxy_core::{cluster::HealthFlags, Registry};
use proxy_test_support::{
    client::raw, free_addr, server, upstream::response, with_timeout, yaml, TestServer, Upstream,
};

/// An upstream answering every request with its own name as the body.
fn upstream(name: &'static str) -> Upstream {
    upstream_after(name, Duration::ZERO)
}

/// An upstream answering every request with its own name, `delay` after the head.
fn upstream_after(name: &'static str, delay: Duration) -> Upstream {
    Upstream::http_async(move |_| async move {
        tokio::time::sleep(delay).await;
        response(200, name)
    })
}

fn registry() -> Registry {
    let mut r = Registry::default();
    proxy_lb::register(&mut r);
    r
}

/// One listener `main` sending everything to cluster `backends` of `endpoints` (a
/// YAML flow list) balanced by `lb` (indented YAML lines).
fn config(lb: &str, endpoints: &str) -> String {
    yaml::config(
        &[yaml::listener("main", "backends", &[])],
        &[format!(
            "  - name: backends\n    endpoints: {endpoints}\n    lb:\n{lb}\n"
        )],
    )
}

/// Runs a server with proxy-lb registered; returns it and its listener address.
fn start(yaml: &str) -> (TestServer, SocketAddr) {
    let proxy = TestServer::start(yaml, registry());
    let addr = proxy.addr("main");
    (proxy, addr)
}

/// One GET with extra headers; returns the body (the upstream's name).
async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> String {
    let text = raw::get(addr, path, headers).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    raw::body_of(&text).to_owned()
}

/// 20 s for a whole test.
const LIMIT: Duration = Duration::from_secs(20);

fn endpoints(addrs: &[SocketAddr], weights: &[u32]) -> String {
    let items: Vec<String> = addrs
        .iter()
        .zip(weights)
        .map(|(a, w)| format!("{{address: \"{a}\", weight: {w}}}"))
        .collect();
    format!("[{}]", items.join(", "))
}

#[tokio::test]
async fn maglev_keys_stick_and_spread() {
    with_timeout(LIMIT, async {
        let ups = [upstream("u0"), upstream("u1"), upstream("u2"), upstream("u3")];
        let addrs = ups.each_ref().map(|u| u.addr);
        let lb = "      typed: maglev\n      config:\n        table_size: 65537\n        hash_policy: [{header: {name: x-user}}, {query_parameter: {name: uid}}]";
        let (mut proxy, addr) = start(&config(lb, &endpoints(&addrs, &[1, 1, 1, 1])));
        let mut owners = HashMap::new();
        for u in 0..24 {
            let first = get(addr, "/", &[("x-user", &format!("user-{u}"))]).await;
            // The same key from a header or the query goes to the same upstream.
            assert_eq!(get(addr, &format!("/p?uid=user-{u}"), &[]).await, first);
            assert_eq!(get(addr, "/", &[("x-user", &format!("user-{u}"))]).await, first);
            owners.insert(u, first);
        }
        let distinct: std::collections::HashSet<_> = owners.values().collect();
        assert!(distinct.len() >= 3, "keys spread over {distinct:?}");
        proxy.stop();
    })
    .await;
}

#[tokio::test]
async fn weighted_round_robin_exact_over_cycles() {
    with_timeout(LIMIT, async {
        let ups = [upstream("a"), upstream("b"), upstream("c")];
        let addrs = ups.each_ref().map(|u| u.addr);
        let lb = "      typed: round_robin";
        let (mut proxy, addr) = start(&config(lb, &endpoints(&addrs, &[3, 1, 2])));
        let mut counts: HashMap<String, u32> = HashMap::new();
        for _ in 0..12 {
            *counts.entry(get(addr, "/", &[]).await).or_default() += 1;
        }
        assert_eq!(counts.get("a"), Some(&6), "{counts:?}");
        assert_eq!(counts.get("b"), Some(&2), "{counts:?}");
        assert_eq!(counts.get("c"), Some(&4), "{counts:?}");
        proxy.stop();
    })
    .await;
}

#[tokio::test]
async fn least_request_and_random_serve() {
    with_timeout(LIMIT, async {
        let ups = [upstream("x"), upstream("y")];
        let addrs = ups.each_ref().map(|u| u.addr);
        for lb in [
            "      typed: least_request\n      config: {choice_count: 2}",
            "      typed: random",
        ] {
            let (mut proxy, addr) = start(&config(lb, &endpoints(&addrs, &[1, 1])));
            let mut seen = std::collections::HashSet::new();
            for _ in 0..40 {
                seen.insert(get(addr, "/", &[]).await);
            }
            assert_eq!(seen.len(), 2, "{lb}: {seen:?}");
            proxy.stop();
        }
    })
    .await;
}

/// An ejected endpoint gets none of its keys, every balancer; cleared, it gets them
/// back (hash balancers).
#[tokio::test]
async fn flagged_endpoints_get_no_traffic() {
    with_timeout(LIMIT, async {
        let ups = [upstream("h0"), upstream("h1"), upstream("h2")];
        let addrs = ups.each_ref().map(|u| u.addr);
        for lb in [
            "      typed: maglev\n      config:\n        hash_policy: [{header: {name: x-user}}]",
            "      typed: ring_hash\n      config:\n        hash_policy: [{header: {name: x-user}}]",
            "      typed: round_robin",
            "      typed: least_request",
            "      typed: random",
        ] {
            let (mut proxy, addr) = start(&config(lb, &endpoints(&addrs, &[1, 2, 1])));
            let owner = get(addr, "/", &[("x-user", "ann")]).await;
            let snapshot = proxy.server().snapshot();
            let cluster = snapshot.clusters.get("backends").unwrap();
            let i = usize::from(owner.as_bytes()[1] - b'0');
            assert_eq!(cluster.endpoints[i].address, addrs[i]);
            cluster.endpoints[i].set_health_flag(HealthFlags::EJECTED);
            for _ in 0..12 {
                assert_ne!(get(addr, "/", &[("x-user", "ann")]).await, owner, "{lb}");
            }
            cluster.endpoints[i].clear_health_flag(HealthFlags::EJECTED);
            if lb.contains("hash_policy") {
                assert_eq!(get(addr, "/", &[("x-user", "ann")]).await, owner, "{lb}");
            }
            proxy.stop();
        }
    })
    .await;
}

/// A slow upstream holds its requests in flight: least request sends the rest to
/// the fast one.
#[tokio::test]
async fn least_request_avoids_a_slow_endpoint() {
    with_timeout(LIMIT, async {
        let ups = [
            upstream_after("slow", Duration::from_millis(600)),
            upstream("fast"),
        ];
        let addrs = ups.each_ref().map(|u| u.addr);
        let lb = "      typed: least_request";
        let (mut proxy, addr) = start(&config(lb, &endpoints(&addrs, &[1, 1])));
        let mut tasks = Vec::new();
        for i in 0..20u64 {
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20 * i)).await;
                get(addr, "/", &[]).await
            }));
        }
        let mut slow = 0;
        for t in tasks {
            if t.await.unwrap() == "slow" {
                slow += 1;
            }
        }
        // Round robin would send 10; least request only the first few (ties while a
        // fast request is still in flight on a loaded machine).
        assert!(slow <= 4, "{slow} of 20 went to the slow endpoint");
        proxy.stop();
    })
    .await;
}

#[tokio::test]
async fn ring_hash_reload_moves_only_removed_endpoint_keys() {
    with_timeout(LIMIT, async {
        let ups = [
            upstream("r0"),
            upstream("r1"),
            upstream("r2"),
            upstream("r3"),
        ];
        let addrs = ups.each_ref().map(|u| u.addr);
        let lb =
            "      typed: ring_hash\n      config:\n        hash_policy: [{cookie: {name: sid}}]";
        let (mut proxy, addr) = start(&config(lb, &endpoints(&addrs, &[1, 1, 1, 1])));
        let mut before = HashMap::new();
        for u in 0..40 {
            before.insert(
                u,
                get(addr, "/", &[("cookie", &format!("a=1; sid=s{u}"))]).await,
            );
        }
        // Same lb section: the balancer instance is kept and told of the new set.
        proxy
            .reload(&config(lb, &endpoints(&addrs[..3], &[1, 1, 1])))
            .unwrap();
        let mut moved = 0;
        for u in 0..40 {
            let now = get(addr, "/", &[("cookie", &format!("a=1; sid=s{u}"))]).await;
            if before[&u] == "r3" {
                assert_ne!(now, "r3");
                moved += 1;
            } else {
                assert_eq!(now, before[&u], "key s{u} moved");
            }
        }
        assert!(moved > 0, "no key lived on the removed endpoint");
        proxy.stop();
    })
    .await;
}

#[tokio::test]
async fn source_ip_hash_without_filters() {
    with_timeout(LIMIT, async {
        let ups = [upstream("s0"), upstream("s1"), upstream("s2")];
        let addrs = ups.each_ref().map(|u| u.addr);
        let lb = "      typed: maglev\n      config:\n        hash_policy: [source_ip]";
        let (mut proxy, addr) = start(&config(lb, &endpoints(&addrs, &[1, 1, 1])));
        let first = get(addr, "/", &[]).await;
        for _ in 0..10 {
            assert_eq!(get(addr, "/", &[]).await, first);
        }
        proxy.stop();
    })
    .await;
}

#[tokio::test]
async fn hash_pick_metrics_on_admin() {
    with_timeout(LIMIT, async {
        let ups = [upstream("m0"), upstream("m1")];
        let addrs = ups.each_ref().map(|u| u.addr);
        let admin = free_addr();
        let lb = "      typed: maglev\n      config:\n        hash_policy: [{header: {name: x-user}}]";
        let yaml = format!(
            "admin:\n  address: \"{admin}\"\n{}",
            config(lb, &endpoints(&addrs, &[1, 1]))
        );
        let (mut proxy, addr) = start(&yaml);
        for u in 0..5 {
            get(addr, "/", &[("x-user", &format!("u{u}"))]).await;
        }
        get(addr, "/", &[]).await;
        let text = raw::get(admin, "/stats/prometheus", &[]).await;
        let series = |result: &str| {
            format!("proxy_lb_hash_picks_total{{cluster=\"backends\",policy=\"maglev\",result=\"{result}\"}}")
        };
        assert!(text.contains(&format!("{} 5", series("owner"))), "{text}");
        assert!(text.contains(&format!("{} 1", series("no_key"))), "{text}");
        assert_eq!(text.matches("# TYPE proxy_lb_hash_picks_total").count(), 1);
        proxy.stop();
    })
    .await;
}

#[test]
fn bad_sections_are_refused_naming_the_field() {
    let addrs = "[\"127.0.0.1:1\"]";
    let cases = [
        (
            "      typed: maglev\n      config:\n        table_size: 65536\n        hash_policy: [source_ip]",
            "clusters[0].lb.config.table_size: 65536 is not prime",
        ),
        (
            "      typed: maglev\n      config:\n        hash_policy: []",
            "clusters[0].lb.config.hash_policy: must list",
        ),
        (
            "      typed: ring_hash\n      config:\n        min_ring_size: 9\n        max_ring_size: 8\n        hash_policy: [source_ip]",
            "clusters[0].lb.config.min_ring_size: 9 is larger",
        ),
        (
            "      typed: round_robin\n      config: {bogus: 1}",
            "clusters[0].lb.config.bogus: unknown field",
        ),
        (
            "      typed: least_request\n      config: {choice_count: 0}",
            "clusters[0].lb.config.choice_count: 0 is outside 2..=16",
        ),
        (
            "      typed: ring_hash\n      config:\n        hash_policy: [{header: {name: \"bad header\"}}]",
            "clusters[0].lb.config.hash_policy[0].header.name: ",
        ),
        (
            "      typed: ring_hash\n      config:\n        hash_policy: [{type: header, name: x}]",
            "clusters[0].lb.config.hash_policy[0]",
        ),
        (
            "      typed: p2c",
            "clusters[0].lb.typed: unknown load-balancing policy",
        ),
    ];
    for (lb, want) in cases {
        let err = server::load_error(&config(lb, addrs), registry()).unwrap_or_default();
        assert!(err.contains(want), "{lb}: {err}");
    }
}
