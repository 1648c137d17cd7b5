//! The balancers inside a running proxy on 127.0.0.1: registered by name, configured
//! from YAML, picking among real upstreams; hash keys stick to one upstream, weights
//! hold, a reload that removes an endpoint moves only its keys, and bad sections are
//! refused naming the field.

#![allow(clippy::unwrap_used)]

use std::{collections::HashMap, future::Future, net::SocketAddr, time::Duration};

use proxy_core::{cluster::HealthFlags, config::Config, Registry, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An upstream answering every request with its own name as the body.
fn upstream(name: &'static str) -> SocketAddr {
    upstream_after(name, Duration::ZERO)
}

/// An upstream answering every request with its own name, `delay` after the head.
fn upstream_after(name: &'static str, delay: Duration) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(n) = s.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            let resp = format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{name}",
                                name.len()
                            );
                            if s.write_all(resp.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
    });
    addr
}

fn registry() -> Registry {
    let mut r = Registry::default();
    proxy_lb::register(&mut r);
    r
}

fn config(lb: &str, endpoints: &str) -> String {
    format!(
        r#"
listeners:
  - name: main
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {{ path: {{ prefix: "/" }} }}
            cluster: backends
clusters:
  - name: backends
    endpoints: {endpoints}
    lb:
{lb}
"#
    )
}

/// Runs a server on a thread of its own; returns it and its listener address.
fn start(yaml: &str) -> (Server, std::thread::JoinHandle<()>, String) {
    let server = Server::new(Config::from_yaml(yaml).unwrap(), registry()).unwrap();
    let runner = server.clone();
    let handle = std::thread::spawn(move || runner.run_until(std::future::pending()).unwrap());
    for _ in 0..500 {
        if !server.listener_addresses().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let addr = server.listener_addresses().into_iter().next().unwrap().1;
    (server, handle, addr)
}

fn stop(server: Server, handle: std::thread::JoinHandle<()>) {
    server.shutdown();
    handle.join().unwrap();
}

/// One GET with extra header lines; returns the body (the upstream's name).
async fn get(addr: &str, path: &str, headers: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{headers}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned()
}

async fn within<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("test timed out");
}

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
    within(async {
        let addrs = [upstream("u0"), upstream("u1"), upstream("u2"), upstream("u3")];
        let lb = "      typed: maglev\n      config:\n        table_size: 65537\n        hash_policy: [{header: {name: x-user}}, {query_parameter: {name: uid}}]";
        let (server, handle, addr) = start(&config(lb, &endpoints(&addrs, &[1, 1, 1, 1])));
        let mut owners = HashMap::new();
        for u in 0..24 {
            let first = get(&addr, "/", &format!("x-user: user-{u}\r\n")).await;
            // The same key from a header or the query goes to the same upstream.
            assert_eq!(get(&addr, &format!("/p?uid=user-{u}"), "").await, first);
            assert_eq!(get(&addr, "/", &format!("x-user: user-{u}\r\n")).await, first);
            owners.insert(u, first);
        }
        let distinct: std::collections::HashSet<_> = owners.values().collect();
        assert!(distinct.len() >= 3, "keys spread over {distinct:?}");
        stop(server, handle);
    })
    .await;
}

#[tokio::test]
async fn weighted_round_robin_exact_over_cycles() {
    within(async {
        let addrs = [upstream("a"), upstream("b"), upstream("c")];
        let lb = "      typed: round_robin";
        let (server, handle, addr) = start(&config(lb, &endpoints(&addrs, &[3, 1, 2])));
        let mut counts: HashMap<String, u32> = HashMap::new();
        for _ in 0..12 {
            *counts.entry(get(&addr, "/", "").await).or_default() += 1;
        }
        assert_eq!(counts.get("a"), Some(&6), "{counts:?}");
        assert_eq!(counts.get("b"), Some(&2), "{counts:?}");
        assert_eq!(counts.get("c"), Some(&4), "{counts:?}");
        stop(server, handle);
    })
    .await;
}

#[tokio::test]
async fn least_request_and_random_serve() {
    within(async {
        let addrs = [upstream("x"), upstream("y")];
        for lb in [
            "      typed: least_request\n      config: {choice_count: 2}",
            "      typed: random",
        ] {
            let (server, handle, addr) = start(&config(lb, &endpoints(&addrs, &[1, 1])));
            let mut seen = std::collections::HashSet::new();
            for _ in 0..40 {
                seen.insert(get(&addr, "/", "").await);
            }
            assert_eq!(seen.len(), 2, "{lb}: {seen:?}");
            stop(server, handle);
        }
    })
    .await;
}

/// An ejected endpoint gets none of its keys, every balancer; cleared, it gets them
/// back (hash balancers).
#[tokio::test]
async fn flagged_endpoints_get_no_traffic() {
    within(async {
        let addrs = [upstream("h0"), upstream("h1"), upstream("h2")];
        for lb in [
            "      typed: maglev\n      config:\n        hash_policy: [{header: {name: x-user}}]",
            "      typed: ring_hash\n      config:\n        hash_policy: [{header: {name: x-user}}]",
            "      typed: round_robin",
            "      typed: least_request",
            "      typed: random",
        ] {
            let (server, handle, addr) = start(&config(lb, &endpoints(&addrs, &[1, 2, 1])));
            let owner = get(&addr, "/", "x-user: ann\r\n").await;
            let snapshot = server.snapshot();
            let cluster = snapshot.clusters.get("backends").unwrap();
            let i = usize::from(owner.as_bytes()[1] - b'0');
            assert_eq!(cluster.endpoints[i].address, addrs[i]);
            cluster.endpoints[i].set_health_flag(HealthFlags::EJECTED);
            for _ in 0..12 {
                assert_ne!(get(&addr, "/", "x-user: ann\r\n").await, owner, "{lb}");
            }
            cluster.endpoints[i].clear_health_flag(HealthFlags::EJECTED);
            if lb.contains("hash_policy") {
                assert_eq!(get(&addr, "/", "x-user: ann\r\n").await, owner, "{lb}");
            }
            stop(server, handle);
        }
    })
    .await;
}

/// A slow upstream holds its requests in flight: least request sends the rest to
/// the fast one.
#[tokio::test]
async fn least_request_avoids_a_slow_endpoint() {
    within(async {
        let addrs = [
            upstream_after("slow", Duration::from_millis(600)),
            upstream("fast"),
        ];
        let lb = "      typed: least_request";
        let (server, handle, addr) = start(&config(lb, &endpoints(&addrs, &[1, 1])));
        let mut tasks = Vec::new();
        for i in 0..20u64 {
            let addr = addr.clone();
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20 * i)).await;
                get(&addr, "/", "").await
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
        stop(server, handle);
    })
    .await;
}

#[tokio::test]
async fn ring_hash_reload_moves_only_removed_endpoint_keys() {
    within(async {
        let addrs = [
            upstream("r0"),
            upstream("r1"),
            upstream("r2"),
            upstream("r3"),
        ];
        let lb =
            "      typed: ring_hash\n      config:\n        hash_policy: [{cookie: {name: sid}}]";
        let (server, handle, addr) = start(&config(lb, &endpoints(&addrs, &[1, 1, 1, 1])));
        let mut before = HashMap::new();
        for u in 0..40 {
            before.insert(
                u,
                get(&addr, "/", &format!("cookie: a=1; sid=s{u}\r\n")).await,
            );
        }
        // Same lb section: the balancer instance is kept and told of the new set.
        server
            .reload(Config::from_yaml(&config(lb, &endpoints(&addrs[..3], &[1, 1, 1]))).unwrap())
            .unwrap();
        let mut moved = 0;
        for u in 0..40 {
            let now = get(&addr, "/", &format!("cookie: a=1; sid=s{u}\r\n")).await;
            if before[&u] == "r3" {
                assert_ne!(now, "r3");
                moved += 1;
            } else {
                assert_eq!(now, before[&u], "key s{u} moved");
            }
        }
        assert!(moved > 0, "no key lived on the removed endpoint");
        stop(server, handle);
    })
    .await;
}

#[tokio::test]
async fn source_ip_hash_without_filters() {
    within(async {
        let addrs = [upstream("s0"), upstream("s1"), upstream("s2")];
        let lb = "      typed: maglev\n      config:\n        hash_policy: [source_ip]";
        let (server, handle, addr) = start(&config(lb, &endpoints(&addrs, &[1, 1, 1])));
        let first = get(&addr, "/", "").await;
        for _ in 0..10 {
            assert_eq!(get(&addr, "/", "").await, first);
        }
        stop(server, handle);
    })
    .await;
}

#[tokio::test]
async fn hash_pick_metrics_on_admin() {
    within(async {
        let addrs = [upstream("m0"), upstream("m1")];
        let admin = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let lb = "      typed: maglev\n      config:\n        hash_policy: [{header: {name: x-user}}]";
        let yaml = format!(
            "admin:\n  address: \"{admin}\"\n{}",
            config(lb, &endpoints(&addrs, &[1, 1]))
        );
        let (server, handle, addr) = start(&yaml);
        for u in 0..5 {
            get(&addr, "/", &format!("x-user: u{u}\r\n")).await;
        }
        get(&addr, "/", "").await;
        let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
        s.write_all(b"GET /stats/prometheus HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8_lossy(&out);
        let series = |result: &str| {
            format!("proxy_lb_hash_picks_total{{cluster=\"backends\",policy=\"maglev\",result=\"{result}\"}}")
        };
        assert!(text.contains(&format!("{} 5", series("owner"))), "{text}");
        assert!(text.contains(&format!("{} 1", series("no_key"))), "{text}");
        assert_eq!(text.matches("# TYPE proxy_lb_hash_picks_total").count(), 1);
        stop(server, handle);
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
        let err = Server::new(Config::from_yaml(&config(lb, addrs)).unwrap(), registry())
            .err()
            .map(|e| proxy_core::DisplayChain(&e).to_string())
            .unwrap_or_default();
        assert!(err.contains(want), "{lb}: {err}");
    }
}
