//! Per-request work of zone routing, steering, the subset balancer and outlier
//! detection: the zone decision, rule matching, a subset pick, one outcome recorded.

// criterion_group! generates undocumented functions.
#![allow(missing_docs, clippy::unwrap_used)]

use std::{collections::BTreeMap, hint::black_box, sync::Arc, time::Duration};

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, Method, StatusCode};
use proxy_core::{
    cluster::{ClusterExtension, ClusterInfo, Outcome},
    Balancer, Endpoint,
};
use proxy_lb::{
    outlier::{ClusterOutlierCounters, OutlierDetection},
    steering::{RequestView, RuleSet, Subset, SubsetConfig, TargetGroup},
    zone::{decide, TargetZone, Topology, ZoneInputs},
};

fn endpoints(n: usize) -> Arc<[Arc<Endpoint>]> {
    (0..n)
        .map(|i| {
            let md = BTreeMap::from([
                ("zone".to_owned(), format!("z{}", i % 4)),
                ("group".to_owned(), format!("g{}", i % 3)),
            ]);
            let addr = ([10, 0, (i / 256) as u8, (i % 256) as u8], 80).into();
            Arc::new(Endpoint::new(addr, std::num::NonZeroU32::MIN, md))
        })
        .collect()
}

fn zone(c: &mut Criterion) {
    let cfg = proxy_core::config::from_yaml(
        "{local_data_centre: dc1, local_cluster: app,
          zones: [{name: z1, data_centre: dc1, city: hz}, {name: z2, data_centre: dc1, city: hz},
                  {name: z3, data_centre: dc2, city: hz}, {name: z4, data_centre: dc3, city: sh}],
          remote_clusters: {dc2: a, dc3: b},
          uid: {source: {header: x-uid}, ranges: [{from: 0, to: 50, zone: z1}, {from: 50, to: 100, zone: z3}]}}",
    )
    .unwrap();
    let topo = Topology::new(&cfg).unwrap();
    let inputs = ZoneInputs {
        forwarded: None,
        uid: Some("1234567"),
        cookie: Some("z2"),
    };
    c.bench_function("zone_decide_uid_with_failover", |b| {
        b.iter(|| decide(&topo, black_box(&inputs), false, 42, |z| z != 0))
    });
}

fn steering(c: &mut Criterion) {
    let mut rules = String::from("rules: [");
    for i in 0..20 {
        rules.push_str(&format!(
            "{{match: {{headers: [{{name: x-rule, value: {{exact: r{i}}}}}], methods: [GET]}}, to: {{group: g{i}}}}},"
        ));
    }
    rules.push(']');
    let set = RuleSet::new(&proxy_core::config::from_yaml(&rules).unwrap(), |_| false).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("x-rule", "r19".parse().unwrap());
    headers.insert("user-agent", "bench".parse().unwrap());
    let view = RequestView {
        method: &Method::GET,
        path: "/api/v1/pay",
        headers: &headers,
        authority: None,
        rpc: None,
    };
    c.bench_function("steering_find_last_of_20_rules", |b| {
        b.iter(|| set.find(black_box(&view)))
    });
}

fn subset(c: &mut Criterion) {
    let eps = endpoints(100);
    let b = Subset::new(&SubsetConfig::default(), || {
        Arc::new(proxy_lb::round_robin::RoundRobin::default())
    });
    b.endpoints_changed(&eps);
    let parts = http::Request::builder()
        .extension(TargetZone("z1".into()))
        .extension(TargetGroup("g2".into()))
        .body(())
        .unwrap()
        .into_parts()
        .0;
    c.bench_function("subset_pick_zone_and_group_100_endpoints", |x| {
        x.iter(|| b.pick(black_box(&eps), &parts))
    });
}

fn outlier(c: &mut Criterion) {
    let eps = endpoints(100);
    let d = OutlierDetection::new(
        proxy_core::config::from_yaml("{consecutive_5xx: 5}").unwrap(),
        "bench",
        Arc::new(ClusterOutlierCounters::default()),
        None,
    )
    .unwrap();
    d.activate(&ClusterInfo {
        name: "bench".into(),
        endpoints: eps.clone(),
    });
    let ok = Outcome::Response(StatusCode::OK);
    c.bench_function("outlier_on_outcome_success_100_endpoints", |b| {
        b.iter(|| d.on_outcome(black_box(&eps[57]), &ok, Duration::from_millis(1)))
    });
}

criterion_group!(benches, zone, steering, subset, outlier);
criterion_main!(benches);
