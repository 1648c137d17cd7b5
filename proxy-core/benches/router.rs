//! Route lookup over 10,000 routes: a mix of exact and prefix paths, a few regexes and
//! method conditions in one virtual host, next to wildcard and catch-all hosts.
//!
//! `cargo bench -p proxy-core --bench router -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_main, Criterion};
use http::{HeaderMap, Method};
use proxy_core::{
    config::{PathMatchConfig, RouteConfig, RouteMatchConfig, VirtualHostConfig},
    router::RouteTable,
};

const ROUTES: usize = 10_000;
const REGEX_AT: [usize; 4] = [10, 2_500, 5_000, 7_500];

fn route(path: PathMatchConfig, methods: &[&str]) -> RouteConfig {
    RouteConfig {
        name: None,
        matcher: RouteMatchConfig {
            path: Some(path),
            methods: methods.iter().map(|m| (*m).to_owned()).collect(),
            headers: vec![],
        },
        cluster: "c".to_owned(),
        timeout: None,
        retry: None,
        prefix_rewrite: None,
        host_rewrite: None,
        request_headers_to_add: vec![],
        request_headers_to_remove: vec![],
        response_headers_to_add: vec![],
        response_headers_to_remove: vec![],
        filters: vec![],
        filter_overrides: Default::default(),
    }
}

/// `api.example.com` has 10,000 routes: even indices exact `/svc<i>/items`, odd ones
/// prefix `/svc<i>/`, every third GET only, a few regexes; no catch-all.
fn vhosts() -> Vec<VirtualHostConfig> {
    let big = (0..ROUTES)
        .map(|i| {
            let methods: &[&str] = if i % 3 == 0 { &["GET"] } else { &[] };
            if REGEX_AT.contains(&i) {
                route(
                    PathMatchConfig::Regex(format!("/re{i}/[0-9]+(/.*)?")),
                    methods,
                )
            } else if i % 2 == 0 {
                route(PathMatchConfig::Exact(format!("/svc{i}/items")), methods)
            } else {
                route(PathMatchConfig::Prefix(format!("/svc{i}/")), methods)
            }
        })
        .collect();
    let small = |name: &str, domain: &str| VirtualHostConfig {
        name: name.to_owned(),
        domains: vec![domain.to_owned()],
        routes: (0..100)
            .map(|i| route(PathMatchConfig::Prefix(format!("/{name}{i}/")), &[]))
            .chain([route(PathMatchConfig::Prefix("/".to_owned()), &[])])
            .collect(),
        filter_overrides: Default::default(),
    };
    vec![
        VirtualHostConfig {
            name: "api".to_owned(),
            domains: vec!["api.example.com".to_owned()],
            routes: big,
            filter_overrides: Default::default(),
        },
        small("wild", "*.example.com"),
        small("www", "www.*"),
        small("default", "*"),
    ]
}

fn bench(c: &mut Criterion) {
    let table = RouteTable::build("listeners[0]", &vhosts(), &|_| true).expect("valid config");
    let headers = HeaderMap::new();
    let cases = [
        (
            "hit_near_start",
            "api.example.com",
            "/svc1/users/42",
            Some("api/1"),
        ),
        (
            "hit_near_end",
            "api.example.com",
            "/svc9999/users/42",
            Some("api/9999"),
        ),
        (
            "hit_near_end_exact",
            "API.example.com:443",
            "/svc9998/items",
            Some("api/9998"),
        ),
        (
            "hit_regex",
            "api.example.com",
            "/re7500/42/x",
            Some("api/7500"),
        ),
        ("miss", "api.example.com", "/nothing/here", None),
        (
            "wildcard_host",
            "eu.example.com",
            "/wild99/x",
            Some("wild/99"),
        ),
    ];
    let mut group = c.benchmark_group("router_find_10k");
    for (name, host, path, want) in cases {
        let found = table
            .find(Some(host), &Method::GET, path, &headers)
            .map(|r| &*r.name);
        assert_eq!(found, want, "{name}");
        group.bench_function(name, |b| {
            b.iter(|| {
                table.find(
                    black_box(Some(host)),
                    black_box(&Method::GET),
                    black_box(path),
                    &headers,
                )
            })
        });
    }
    group.finish();
    c.bench_function("router_build_10k", |b| {
        let vhosts = vhosts();
        b.iter(|| RouteTable::build("listeners[0]", black_box(&vhosts), &|_| true))
    });
}

mod group {
    // The macro generates an undocumented `pub fn`.
    #![allow(missing_docs, unreachable_pub)]
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(group::benches);
