//! Traffic steering on real sockets: header `type: transfer` goes to endpoint group
//! Group_2 and everything else to Group_1, a weighted canary split, per-application
//! redirection to another cluster, rules swapped by a live reload, and bad rules
//! refused at load.

#![allow(clippy::unwrap_used)]

use crate::common_resilience;

use std::collections::HashMap;

use common_resilience::{get, listener, load_error, prometheus, request, start, Upstream, LIMIT};
use proxy_core::config::Config;
use proxy_test_support::free_addr;

fn yaml(
    rules: &str,
    g1: &[&Upstream],
    g2: &[&Upstream],
    canary: &Upstream,
    billing: &Upstream,
) -> String {
    let mut eps = Vec::new();
    for u in g1 {
        eps.push(format!(
            "{{address: \"{}\", metadata: {{group: Group_1}}}}",
            u.addr
        ));
    }
    for u in g2 {
        eps.push(format!(
            "{{address: \"{}\", metadata: {{group: Group_2}}}}",
            u.addr
        ));
    }
    eps.push(format!(
        "{{address: \"{}\", metadata: {{group: canary}}}}",
        canary.addr
    ));
    format!(
        "listeners:\n{}clusters:\n  - {{name: app, lb: {{typed: subset, config: {{inner: round_robin}}}}, endpoints: [{}]}}\n  - {{name: billing, endpoints: [\"{}\"]}}\n",
        listener("main", &format!("[{{typed: traffic_steering, config: {{rules: {rules}}}}}]"), "app"),
        eps.join(", "),
        billing.addr
    )
}

const RULES: &str = r#"[
    {name: transfers, match: {headers: [{name: type, value: {exact: transfer}}]}, to: {group: Group_2}},
    {name: billing-app, match: {headers: [{name: x-app, value: {exact: billing}}]}, to: {cluster: billing}},
    {name: canary, match: {path: {prefix: /canary/}, methods: [GET]}, to: {groups: [{name: Group_1, weight: 1}, {name: canary, weight: 1}]}},
    {name: default, match: {}, to: {group: Group_1}}]"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_go_to_group_2_and_the_rest_elsewhere() {
    let (a1, a2, b1, b2, c, bill) = (
        Upstream::start("g1-a"),
        Upstream::start("g1-b"),
        Upstream::start("g2-a"),
        Upstream::start("g2-b"),
        Upstream::start("canary"),
        Upstream::start("billing"),
    );
    let admin = free_addr();
    let proxy = start(&format!(
        "admin: {{address: \"{admin}\"}}\n{}",
        yaml(RULES, &[&a1, &a2], &[&b1, &b2], &c, &bill)
    ));
    let addr = proxy.addr("main");
    tokio::time::timeout(LIMIT, async {
        let mut by = HashMap::<String, usize>::new();
        for _ in 0..20 {
            let r = get(addr, "/pay", &[("type", "transfer")]).await;
            assert_eq!(r.status, 200, "{}", r.head);
            *by.entry(r.upstream().to_owned()).or_default() += 1;
        }
        assert_eq!(by.len(), 2, "both Group_2 endpoints, nothing else: {by:?}");
        assert!(by.keys().all(|k| k.starts_with("g2-")), "{by:?}");

        let mut by = HashMap::<String, usize>::new();
        for t in ["query", "refund"] {
            for _ in 0..10 {
                let r = request(
                    addr,
                    "POST",
                    "/pay",
                    &[("type", t), ("content-length", "0")],
                )
                .await;
                *by.entry(r.upstream().to_owned()).or_default() += 1;
            }
        }
        for _ in 0..10 {
            *by.entry(get(addr, "/pay", &[]).await.upstream().to_owned())
                .or_default() += 1;
        }
        assert!(
            by.keys().all(|k| k.starts_with("g1-")),
            "everything else to Group_1: {by:?}"
        );
        assert_eq!(by.values().sum::<usize>(), 30);

        // Per-application redirection to another cluster.
        let r = get(addr, "/pay", &[("x-app", "billing")]).await;
        assert_eq!(r.upstream(), "billing");

        // A 1:1 canary split over 200 requests.
        let mut canary = 0;
        for _ in 0..200 {
            let r = get(addr, "/canary/x", &[]).await;
            if r.upstream() == "canary" {
                canary += 1;
            } else {
                assert!(r.upstream().starts_with("g1-"), "{}", r.upstream());
            }
        }
        assert!((60..=140).contains(&canary), "canary share {canary}/200");
        assert_eq!(c.hits(), canary as u64);
        let text = prometheus(admin).await;
        assert!(
            text.contains("proxy_lb_steering_matches_total{rule=\"transfers\"} 20"),
            "{text}"
        );
        assert!(
            text.contains("proxy_lb_steering_matches_total{rule=\"canary\"} 200"),
            "{text}"
        );
        assert!(
            text.contains("proxy_lb_steering_matches_total{rule=\"default\"} 30"),
            "{text}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_swap_live_on_reload_and_empty_groups_answer_503() {
    let (a1, a2, b1, b2, c, bill) = (
        Upstream::start("g1-a"),
        Upstream::start("g1-b"),
        Upstream::start("g2-a"),
        Upstream::start("g2-b"),
        Upstream::start("canary"),
        Upstream::start("billing"),
    );
    let proxy = start(&yaml(RULES, &[&a1, &a2], &[&b1, &b2], &c, &bill));
    let addr = proxy.addr("main");
    tokio::time::timeout(LIMIT, async {
        assert!(get(addr, "/", &[("type", "transfer")])
            .await
            .upstream()
            .starts_with("g2-"));
        // Blue-green switch: transfers now go to Group_1, a group nobody has gets 503.
        let swapped = r#"[
            {name: transfers, match: {headers: [{name: type, value: {exact: transfer}}]}, to: {group: Group_1}},
            {name: ghost, match: {headers: [{name: type, value: {exact: ghost}}]}, to: {group: Nobody}}]"#;
        let cfg = Config::from_yaml(&yaml(swapped, &[&a1, &a2], &[&b1, &b2], &c, &bill)).unwrap();
        proxy.server().reload(cfg).unwrap();
        for _ in 0..5 {
            let r = get(addr, "/", &[("type", "transfer")]).await;
            assert!(r.upstream().starts_with("g1-"), "{}", r.upstream());
        }
        let r = get(addr, "/", &[("type", "ghost")]).await;
        assert_eq!(r.status, 503, "{}", r.head);
        assert_eq!(
            r.header("x-proxy-error"),
            Some("no_endpoints"),
            "{}",
            r.head
        );
    })
    .await
    .unwrap();
}

#[test]
fn bad_rules_are_refused_naming_the_field() {
    let (u, v, w) = (
        Upstream::start("u"),
        Upstream::start("v"),
        Upstream::start("w"),
    );
    let e = load_error(&yaml("[]", &[&u], &[], &v, &w));
    assert!(
        e.contains("listeners[0].http_filters[0].config.rules: at least one rule"),
        "{e}"
    );
    let e = load_error(&yaml(
        "[{match: {}, to: {groups: [{name: a, weight: 0}]}}]",
        &[&u],
        &[],
        &v,
        &w,
    ));
    assert!(
        e.contains("listeners[0].http_filters[0].config.rules[0].to.groups[0].weight: "),
        "{e}"
    );
    let e = load_error(&yaml(
        "[{match: {}, to: {cluster: nowhere}}]",
        &[&u],
        &[],
        &v,
        &w,
    ));
    assert!(
        e.contains(
            "listeners[0].http_filters[0].config.rules[0].to.cluster: unknown cluster nowhere"
        ),
        "{e}"
    );
    let e = load_error(&yaml(
        "[{match: {}, to: {group: a, cluster: billing}}]",
        &[&u],
        &[],
        &v,
        &w,
    ));
    assert!(
        e.contains("listeners[0].http_filters[0].config.rules[0].to"),
        "{e}"
    );
    let e = load_error(&yaml(
        "[{match: {headers: [{name: x, value: {regex: \"(\"}}]}, to: {group: a}}]",
        &[&u],
        &[],
        &v,
        &w,
    ));
    assert!(
        e.contains("listeners[0].http_filters[0].config.rules[0].match.headers[0].value"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_and_group_together_pick_the_intersection() {
    let ups: Vec<Upstream> = ["z1-g1", "z1-g2", "z2-g1", "z2-g2"]
        .iter()
        .map(|n| Upstream::start(n))
        .collect();
    let eps: Vec<String> = ups
        .iter()
        .map(|u| {
            let (z, g) = u.name.split_once('-').unwrap();
            let g = if g == "g2" { "Group_2" } else { "Group_1" };
            format!(
                "{{address: \"{}\", metadata: {{zone: {z}, group: {g}}}}}",
                u.addr
            )
        })
        .collect();
    let filters = "[{typed: zone_routing, config: {local_data_centre: dc1, local_cluster: app, zones: [{name: z1, data_centre: dc1, city: hz}, {name: z2, data_centre: dc1, city: hz}]}},
                    {typed: traffic_steering, config: {rules: [{match: {headers: [{name: type, value: {exact: transfer}}]}, to: {group: Group_2}}]}}]";
    let proxy = start(&format!(
        "listeners:\n{}clusters:\n  - {{name: app, lb: zone_aware, endpoints: [{}]}}\n",
        listener("main", filters, "app"),
        eps.join(", ")
    ));
    let addr = proxy.addr("main");
    tokio::time::timeout(LIMIT, async {
        for _ in 0..5 {
            let r = get(addr, "/", &[("cookie", "zone=z2"), ("type", "transfer")]).await;
            assert_eq!(r.upstream(), "z2-g2");
            let r = get(addr, "/", &[("cookie", "zone=z1"), ("type", "transfer")]).await;
            assert_eq!(r.upstream(), "z1-g2");
        }
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..6 {
            seen.insert(
                get(addr, "/", &[("cookie", "zone=z1")])
                    .await
                    .upstream()
                    .to_owned(),
            );
        }
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            ["z1-g1", "z1-g2"],
            "no group: the whole zone"
        );
    })
    .await
    .unwrap();
}
