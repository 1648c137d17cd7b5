//! Property tests of the router: the indexed [`RouteTable::find`] agrees with a naive
//! linear first-match scan, and never panics whatever the request.

use http::{HeaderMap, HeaderValue, Method};
use proptest::prelude::*;
use proxy_core::{
    config::{PathMatchConfig, RouteConfig, RouteMatchConfig, VirtualHostConfig},
    matcher::{HeaderMatch, StringMatch},
    router::RouteTable,
};

const SEGMENTS: &[&str] = &["a", "b", "ab", "x1", "", "é"];
const REGEXES: &[&str] = &[
    "/a.*",
    "/(a|b)/.*",
    "/[ab]+",
    "/.*1",
    "/ab?/x1",
    ".*",
    "/a/b",
    "/é?[a-z]*",
];
const DOMAINS: &[&str] = &[
    "a.com",
    "*.a.com",
    "b.a.com",
    "*.b.a.com",
    "api.*",
    "api.a.*",
    "*",
    "x.b.a.com",
];
const HOSTS: &[&str] = &[
    "a.com",
    "A.COM:80",
    "b.a.com",
    "x.b.a.com",
    "y.x.b.a.com",
    "c.b.a.com:8080",
    "api.foo",
    "api.a.com",
    "API.A.ORG",
    "api.",
    "other",
    "v0.only",
    "V1.ONLY:1",
    "",
];
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE"];
const HEADER_NAMES: &[&str] = &["x-a", "x-b"];
const HEADER_VALUES: &[&str] = &["1", "2", "12", "a", ""];

fn pick<T: Clone + std::fmt::Debug + 'static>(items: &'static [T]) -> impl Strategy<Value = T> {
    proptest::sample::select(items)
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(pick(SEGMENTS), 0..4).prop_map(|segs| format!("/{}", segs.join("/")))
}

fn path_match() -> impl Strategy<Value = Option<PathMatchConfig>> {
    prop_oneof![
        1 => Just(None),
        3 => path().prop_map(|p| Some(PathMatchConfig::Exact(p))),
        3 => (path(), 1usize..8).prop_map(|(p, cut)| {
            let mut cut = cut.min(p.len());
            while !p.is_char_boundary(cut) {
                cut -= 1;
            }
            Some(PathMatchConfig::Prefix(p[..cut.max(1)].to_owned()))
        }),
        2 => pick(REGEXES).prop_map(|r| Some(PathMatchConfig::Regex(r.to_owned()))),
    ]
}

fn header_match() -> impl Strategy<Value = HeaderMatch> {
    let value = prop_oneof![
        pick(HEADER_VALUES).prop_map(|v| Some(StringMatch::Exact(v.to_owned()))),
        pick(&["1", "", "a"][..]).prop_map(|v| Some(StringMatch::Prefix(v.to_owned()))),
        pick(&["[0-9]+", "1|2", "a*"][..])
            .prop_map(|v| Some(StringMatch::Regex(v.parse().expect("valid regex")))),
        Just(None),
    ];
    (pick(HEADER_NAMES), value, prop::bool::weighted(0.2)).prop_map(|(name, value, invert)| {
        HeaderMatch {
            name: name.parse().expect("valid name"),
            value,
            invert,
        }
    })
}

fn route() -> impl Strategy<Value = RouteConfig> {
    (
        path_match(),
        prop::collection::vec(pick(METHODS), 0..3),
        prop::collection::vec(header_match(), 0..3),
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.5),
    )
        .prop_map(
            |(path, methods, headers, with_headers, with_methods)| RouteConfig {
                name: None,
                matcher: RouteMatchConfig {
                    path,
                    methods: if with_methods {
                        methods.into_iter().map(str::to_owned).collect()
                    } else {
                        vec![]
                    },
                    headers: if with_headers { headers } else { vec![] },
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
            },
        )
}

/// One to four vhosts, each with its own `v<i>.only` domain plus some shared-pool
/// domains (each pool domain in at most one vhost), and up to `max_routes` routes.
fn vhosts(max_routes: usize) -> impl Strategy<Value = Vec<VirtualHostConfig>> {
    (1usize..5)
        .prop_flat_map(move |n| {
            (
                prop::collection::vec(prop::collection::vec(route(), 0..max_routes), n),
                prop::collection::vec(prop::option::of(0..n), DOMAINS.len()),
            )
        })
        .prop_map(|(routes, owners)| {
            routes
                .into_iter()
                .enumerate()
                .map(|(v, routes)| {
                    let mut domains = vec![format!("v{v}.only")];
                    domains.extend(
                        owners
                            .iter()
                            .zip(DOMAINS)
                            .filter(|(owner, _)| **owner == Some(v))
                            .map(|(_, d)| (*d).to_owned()),
                    );
                    VirtualHostConfig {
                        name: format!("v{v}"),
                        domains,
                        routes,
                        filter_overrides: Default::default(),
                    }
                })
                .collect()
        })
}

#[derive(Debug, Clone)]
struct Request {
    host: Option<&'static str>,
    method: Method,
    path: String,
    headers: Vec<(&'static str, &'static str)>,
}

fn request() -> impl Strategy<Value = Request> {
    (
        prop::option::weighted(0.9, pick(HOSTS)),
        pick(METHODS),
        path(),
        prop::collection::vec((pick(HEADER_NAMES), pick(HEADER_VALUES)), 0..4),
    )
        .prop_map(|(host, method, path, headers)| Request {
            host,
            method: Method::from_bytes(method.as_bytes()).expect("valid method"),
            path,
            headers,
        })
}

fn header_map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_static(v));
    }
    h
}

// === The reference: a linear first-match scan ===

fn whole(pattern: &str) -> regex::Regex {
    regex::Regex::new(&format!("^(?:{pattern})$")).expect("test regex compiles")
}

fn naive_vhost<'a>(
    vhosts: &'a [VirtualHostConfig],
    host: Option<&str>,
) -> Option<&'a VirtualHostConfig> {
    let any = || vhosts.iter().find(|v| v.domains.iter().any(|d| d == "*"));
    let Some(host) = host else {
        return any();
    };
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
    .to_ascii_lowercase();
    let domains = || {
        vhosts
            .iter()
            .flat_map(|v| v.domains.iter().map(move |d| (d.to_ascii_lowercase(), v)))
    };
    if let Some((_, v)) = domains().find(|(d, _)| *d == host) {
        return Some(v);
    }
    let suffix = domains()
        .filter_map(|(d, v)| Some((d.strip_prefix('*')?.to_owned(), v)))
        .filter(|(s, _)| !s.is_empty() && host.len() > s.len() && host.ends_with(s.as_str()))
        .max_by_key(|(s, _)| s.len());
    if let Some((_, v)) = suffix {
        return Some(v);
    }
    let prefix = domains()
        .filter_map(|(d, v)| Some((d.strip_suffix('*')?.to_owned(), v)))
        .filter(|(p, _)| !p.is_empty() && host.len() > p.len() && host.starts_with(p.as_str()))
        .max_by_key(|(p, _)| p.len());
    if let Some((_, v)) = prefix {
        return Some(v);
    }
    any()
}

fn naive_route_matches(route: &RouteConfig, req: &Request, headers: &HeaderMap) -> bool {
    let m = &route.matcher;
    let path_ok = match &m.path {
        None => true,
        Some(PathMatchConfig::Exact(p)) => req.path == *p,
        Some(PathMatchConfig::Prefix(p)) => req.path.starts_with(p.as_str()),
        Some(PathMatchConfig::Regex(r)) => whole(r).is_match(&req.path),
    };
    let method_ok = m.methods.is_empty() || m.methods.iter().any(|x| x == req.method.as_str());
    let headers_ok = m.headers.iter().all(|h| {
        let values: Vec<&str> = headers
            .get_all(&h.name.0)
            .iter()
            .map(|v| v.to_str().expect("ascii"))
            .collect();
        let hit = match &h.value {
            None => !values.is_empty(),
            Some(StringMatch::Exact(e)) => values.iter().any(|v| v == e),
            Some(StringMatch::Prefix(p)) => values.iter().any(|v| v.starts_with(p.as_str())),
            Some(StringMatch::Regex(r)) => values.iter().any(|v| whole(r.as_str()).is_match(v)),
            Some(other) => values.iter().any(|v| other.matches(v)),
        };
        hit != h.invert
    });
    path_ok && method_ok && headers_ok
}

/// The `<vhost>/<index>` name of the route a linear scan picks.
fn naive_find(vhosts: &[VirtualHostConfig], req: &Request) -> Option<String> {
    let vhost = naive_vhost(vhosts, req.host)?;
    let headers = header_map(&req.headers);
    let i = vhost
        .routes
        .iter()
        .position(|r| naive_route_matches(r, req, &headers))?;
    Some(format!("{}/{i}", vhost.name))
}

fn build(vhosts: &[VirtualHostConfig]) -> RouteTable {
    RouteTable::build("listeners[0]", vhosts, &|_| true).expect("generated config is valid")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn find_agrees_with_linear_scan(
        vhosts in vhosts(12),
        requests in prop::collection::vec(request(), 1..24),
    ) {
        let table = build(&vhosts);
        for req in &requests {
            let got = table
                .find(req.host, &req.method, &req.path, &header_map(&req.headers))
                .map(|r| r.name.to_string());
            prop_assert_eq!(got, naive_find(&vhosts, req), "request {:?}", req);
        }
    }

}

proptest! {
    // Tables of up to 80 routes a vhost, so that regex routes span several filter sets.
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn find_agrees_with_linear_scan_on_large_vhosts(
        vhosts in vhosts(80),
        requests in prop::collection::vec(request(), 1..48),
    ) {
        let table = build(&vhosts);
        for req in &requests {
            let got = table
                .find(req.host, &req.method, &req.path, &header_map(&req.headers))
                .map(|r| r.name.to_string());
            prop_assert_eq!(got, naive_find(&vhosts, req), "request {:?}", req);
        }
    }

}

proptest! {
    #[test]
    fn find_never_panics(
        vhosts in vhosts(12),
        host in prop::option::of(any::<String>()),
        path in any::<String>(),
        method in "[A-Z]{1,8}",
        headers in prop::collection::vec((pick(HEADER_NAMES), prop::collection::vec(any::<u8>(), 0..8)), 0..4),
    ) {
        let table = build(&vhosts);
        let method = Method::from_bytes(method.as_bytes()).expect("valid method");
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                map.append(name, value);
            }
        }
        let _ = table.find(host.as_deref(), &method, &path, &map);
        let _ = table.find(host.as_deref(), &method, "/a", &map);
        let upper = host.as_deref().map(str::to_uppercase);
        let _ = table.find(upper.as_deref(), &method, &path, &map);
    }
}

#[test]
fn every_generated_rewrite_keeps_the_query() {
    let vhosts = vec![VirtualHostConfig {
        name: "v".to_owned(),
        domains: vec!["*".to_owned()],
        routes: vec![RouteConfig {
            prefix_rewrite: Some("/new/".to_owned()),
            matcher: RouteMatchConfig {
                path: Some(PathMatchConfig::Prefix("/old/".to_owned())),
                methods: vec![],
                headers: vec![],
            },
            ..route_config()
        }],
        filter_overrides: Default::default(),
    }];
    let table = build(&vhosts);
    let route = table.routes().next().expect("one route");
    proptest!(|(rest in "[a-z/]{0,8}", query in prop::option::of("[a-z=&/?]{0,8}"))| {
        let pq = match &query {
            Some(q) => format!("/old/{rest}?{q}"),
            None => format!("/old/{rest}"),
        };
        let want = match &query {
            Some(q) => format!("/new/{rest}?{q}"),
            None => format!("/new/{rest}"),
        };
        prop_assert_eq!(route.rewrite_path(&pq), Some(want));
    });
}

fn route_config() -> RouteConfig {
    RouteConfig {
        name: None,
        matcher: RouteMatchConfig {
            path: None,
            methods: vec![],
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
