//! One scenario set for every RPC protocol, run against real third-party peers through
//! the proxy (in-process, `proxy_codec::register`): each scenario is an async function
//! taking the protocol's peer driver ([`Peers`]), and `tests/interop.rs` runs it once
//! per protocol (Bolt: sofa-rpc-node's client and server over Bolt v1 and v2 with
//! and without CRC; Dubbo: dubbo2.js and PyPI dubbo-ssl-python calling sofa-rpc-node's
//! server through js-remoting-for-apache-dubbo). What differs between protocols (the
//! programs, their reports, fixtures, statuses) is the driver's (`driver.rs`).
//!
//! Scenarios that need the peers print `SKIPPED:` and pass without them
//! (`scripts/deps/proxy-codec.sh` installs them); the captured-frame scenarios
//! (`captured.rs`) need nothing.

#![allow(clippy::unwrap_used)]

#[path = "captured.rs"]
mod captured;
#[path = "driver.rs"]
mod driver;
use crate::{peers, proxy};
#[path = "wire.rs"]
mod wire;

use std::time::Duration;

use proxy_test_support::{client::raw, upstream::response, Upstream};

pub(crate) use self::{
    captured::{captured_frames_through_proxy, proxy_failures_answered_with_protocol_statuses},
    driver::{Client, Peers, Phases, Proto},
};
use self::{
    peers::Report,
    proxy::{cluster, config, listener, route, route_regex, start},
};

/// The limit on every scenario.
pub(crate) const TEST_LIMIT: Duration = Duration::from_secs(90);

const ECHO: &str = "com.example.EchoService";
const OTHER: &str = "com.example.OtherService";

/// A listener of `p` routing the echo and other services to one cluster of `servers`.
fn one_cluster(p: Proto, servers: &[String]) -> String {
    let name = format!("{}_servers", p.name());
    let routes = route(ECHO, &name) + &route(OTHER, &name);
    config(
        &[listener(p.name(), p.name(), &routes)],
        &[cluster(&name, p.name(), servers)],
    )
}

/// A no-route call was answered with an error, promptly, not a timeout.
fn assert_prompt_error(client: Client, report: &Report) {
    if let Some(err) = report.json["unknown"]["error"].as_str() {
        for marker in client.proxy_failure_markers() {
            assert!(!err.contains(marker), "no-route call failed: {err}");
        }
    }
    assert!(
        report.num("/unknown/ms") < 3000,
        "no-route answer took too long: {}",
        report.json
    );
}

// === scenarios ===

/// The peers themselves, with no proxy between them: when this fails, the Node or
/// Python packages are broken, not the proxy. Every client of the protocol.
pub(crate) async fn peers_work_directly(peers: &Peers) {
    let Some(node) = peers.node() else { return };
    let server = node.server(peers.proto.name(), "A", &[]).await;
    let phases = Phases {
        calls: 300,
        concurrency: 50,
        heartbeats: 2,
        oneway: 1,
        unknown: true,
        big: 2,
    };
    let clients = [vec![peers.main_client()], peers.other_clients()].concat();
    for client in clients {
        let Some(report) = peers.run(&node, client, &server.addr(), &phases, &[]).await else {
            continue;
        };
        report.assert_ok();
        client.check(&report);
        assert_eq!(report.num("/calls/ok"), 300, "{client:?}");
    }
}

/// Two clients at once, each with many calls in flight on its one connection (and a
/// few 100 kB arguments, so frames span many reads): every answer reaches its own
/// caller (both clients number requests alike, so the proxy must rewrite ids on the
/// shared upstream connection); heartbeats are answered; one-way requests pass
/// without disturbing the connection; a service with no route gets the protocol's
/// error answer, not a timeout.
pub(crate) async fn calls_heartbeats_oneway_and_no_route(peers: &Peers) {
    let Some(node) = peers.node() else { return };
    let server = node.server(peers.proto.name(), "A", &[]).await;
    let proxy = start(&one_cluster(peers.proto, &[server.addr()]));
    let target = proxy.addr_text(peers.proto.name());
    let client = peers.main_client();
    let phases = Phases {
        calls: 1500,
        concurrency: 100,
        heartbeats: 5,
        oneway: 3,
        unknown: true,
        big: 8,
    };
    let first = peers.spawn(&node, client, &target, &phases, &[]).unwrap();
    let second = peers.spawn(&node, client, &target, &phases, &[]).unwrap();
    for report in [first.finish().await, second.finish().await] {
        report.assert_ok();
        assert_eq!(report.num("/calls/ok"), 1500, "{}", report.json);
        assert_eq!(report.num("/calls/mismatched"), 0);
        assert_eq!(report.num("/big/ok"), 8, "{}", report.json);
        assert_eq!(client.heartbeats_answered(&report), 5);
        if let Some(follow_up) = report.json["heartbeats"].get("followUp") {
            assert_eq!(follow_up, true, "{}", report.json);
        }
        assert_eq!(report.json["oneway"]["followUp"], true);
        assert_eq!(report.num("/connections"), 1);
        assert_prompt_error(client, &report);
    }
}

/// The protocol's other clients through the proxy (Bolt v2 with and without CRC32;
/// Dubbo: the Python client with its own hessian2 and threads): calls, heartbeats,
/// one-way requests where the client has them, and a service with no route.
pub(crate) async fn other_clients_through_proxy(peers: &Peers) {
    let Some(node) = peers.node() else { return };
    let server = node.server(peers.proto.name(), "A", &[]).await;
    let proxy = start(&one_cluster(peers.proto, &[server.addr()]));
    let target = proxy.addr_text(peers.proto.name());
    let phases = Phases {
        calls: 500,
        concurrency: 32,
        heartbeats: 3,
        oneway: 2,
        unknown: true,
        big: 0,
    };
    for client in peers.other_clients() {
        let Some(report) = peers.run(&node, client, &target, &phases, &[]).await else {
            continue;
        };
        report.assert_ok();
        client.check(&report);
        assert_eq!(report.num("/calls/ok"), 500, "{}", report.json);
        assert_eq!(client.heartbeats_answered(&report), 3);
        assert_eq!(report.num("/connections"), 1);
        assert_prompt_error(client, &report);
    }
}

/// Two services on one listener go to two different clusters, and a route on one
/// method beats its service's route.
pub(crate) async fn routes_services_to_different_clusters(peers: &Peers) {
    let Some(node) = peers.node() else { return };
    let p = peers.proto;
    let a = node.server(p.name(), "A", &[]).await;
    let b = node.server(p.name(), "B", &[]).await;
    // A method-level route first: EchoService's whoami goes to B, the rest of
    // EchoService to A (Bolt's path carries the unique name `service:version`).
    let routes = route_regex(
        r"/com\.example\.EchoService(:1\.0)?/whoami",
        "other_cluster",
    ) + &route(ECHO, "echo_cluster")
        + &route(OTHER, "other_cluster");
    let yaml = config(
        &[listener(p.name(), p.name(), &routes)],
        &[
            cluster("echo_cluster", p.name(), &[a.addr()]),
            cluster("other_cluster", p.name(), &[b.addr()]),
        ],
    );
    let proxy = start(&yaml);
    let whoami = format!("{ECHO},{OTHER}");
    let extra = ["--whoami", &whoami, "--slow", "6", "--slow-ms", "1"];
    let report = peers
        .run(
            &node,
            peers.main_client(),
            &proxy.addr_text(p.name()),
            &Phases::default(),
            &extra,
        )
        .await
        .unwrap();
    report.assert_ok();
    assert_eq!(report.json["whoami"][ECHO], "B", "{}", report.json);
    assert_eq!(report.json["slow"]["answeredBy"]["A"], 6, "{}", report.json);
    assert_eq!(report.json["whoami"][OTHER], "B/other", "{}", report.json);
}

/// One of two servers is killed with calls in flight: the calls it held fail
/// promptly with an error answer, the other server's calls succeed, and the client's
/// connection to the proxy stays up (a client would otherwise reconnect, or time the
/// calls out).
pub(crate) async fn server_killed_mid_flight_fails_only_its_calls(peers: &Peers) {
    let Some(node) = peers.node() else { return };
    let p = peers.proto;
    let mut a = node.server(p.name(), "A", &[]).await;
    let b = node.server(p.name(), "B", &[]).await;
    let proxy = start(&one_cluster(p, &[a.addr(), b.addr()]));
    let client = peers.main_client();
    let extra = ["--slow", "40", "--slow-ms", "3000", "--timeout", "8000"];
    let mut running = peers
        .spawn(
            &node,
            client,
            &proxy.addr_text(p.name()),
            &Phases::default(),
            &extra,
        )
        .unwrap();
    running.wait_for_line("SENT").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.kill().await;
    let report = running.finish().await;
    report.assert_ok();
    let answered = &report.json["slow"]["answeredBy"];
    let from_b = answered["B"].as_u64().unwrap_or(0);
    assert!(
        answered.get("A").is_none(),
        "the killed server answered: {}",
        report.json
    );
    assert!(
        from_b > 0,
        "no call reached the surviving server: {}",
        report.json
    );
    let failed = report.json["slow"]["failed"].as_array().unwrap();
    assert_eq!(from_b + failed.len() as u64, 40, "{}", report.json);
    assert!(
        !failed.is_empty(),
        "no call was in flight on the killed server: {}",
        report.json
    );
    for f in failed {
        let ms = f["ms"].as_u64().unwrap();
        let error = f["error"].as_str().unwrap();
        for marker in client.proxy_failure_markers() {
            assert!(!error.contains(marker), "a failed call: {error}");
        }
        assert!(ms < 2800, "a failed call was answered only after {ms} ms");
    }
    assert_eq!(report.num("/connections"), 1);
}

/// Downstream connections share the pooled upstream connection: while two clients
/// hold calls in flight on their own connections to the proxy, a third asks the
/// server how many connections it has, and the proxy holds one
/// (`connections_per_endpoint` defaults to 1).
pub(crate) async fn downstream_connections_share_one_upstream_connection(peers: &Peers) {
    let Some(node) = peers.node() else { return };
    let p = peers.proto;
    let server = node.server(p.name(), "A", &[]).await;
    let proxy = start(&one_cluster(p, &[server.addr()]));
    let target = proxy.addr_text(p.name());
    let client = peers.main_client();
    let none = Phases::default();
    let slow = ["--slow", "10", "--slow-ms", "1500", "--timeout", "8000"];
    let mut first = peers.spawn(&node, client, &target, &none, &slow).unwrap();
    let mut second = peers.spawn(&node, client, &target, &none, &slow).unwrap();
    first.wait_for_line("SENT").await;
    second.wait_for_line("SENT").await;
    let probe = peers
        .run(&node, client, &target, &none, &["--connections"])
        .await
        .unwrap();
    probe.assert_ok();
    assert_eq!(
        probe.num("/serverConnections"),
        1,
        "three downstream connections should share one upstream connection: {}",
        probe.json
    );
    for report in [first.finish().await, second.finish().await] {
        report.assert_ok();
        assert_eq!(
            report.json["slow"]["answeredBy"]["A"], 10,
            "{}",
            report.json
        );
    }
}

/// An upstream answers one call with a frame over the cluster's `max_frame_bytes`
/// while another client's calls are in flight on the same upstream connection: only
/// that call fails, promptly and with the protocol's error; every other call, the
/// caller's own included, is answered, and the upstream connection stays the one.
pub(crate) async fn oversized_response_fails_only_its_call(peers: &Peers) {
    let Some(node) = peers.node() else { return };
    let p = peers.proto;
    let server = node.server(p.name(), "A", &[]).await;
    let name = format!("{}_servers", p.name());
    let routes = route(ECHO, &name);
    let proxy = start(&config(
        &[listener(p.name(), p.name(), &routes)],
        &[proxy_test_support::yaml::cluster(
            &name,
            &[server.addr()],
            &[
                &format!("protocol: {}", p.name()),
                "protocol_options: { max_frame_bytes: 64KiB }",
            ],
        )],
    ));
    let target = proxy.addr_text(p.name());
    let client = peers.main_client();
    let none = Phases::default();
    let slow = ["--slow", "40", "--slow-ms", "1500", "--timeout", "8000"];
    let mut other = peers.spawn(&node, client, &target, &none, &slow).unwrap();
    other.wait_for_line("SENT").await;
    let huge = [
        "--slow",
        "5",
        "--slow-ms",
        "1500",
        "--huge",
        "200000",
        "--timeout",
        "8000",
    ];
    let mut caller = peers.spawn(&node, client, &target, &none, &huge).unwrap();
    caller.wait_for_line("SENT").await;
    let caller = caller.finish().await;
    caller.assert_ok();
    let error = caller.json["huge"]["error"].as_str().unwrap_or_else(|| {
        panic!(
            "the oversized answer did not fail its call: {}",
            caller.json
        )
    });
    for marker in client.proxy_failure_markers() {
        assert!(!error.contains(marker), "the oversized call: {error}");
    }
    assert!(
        report_ms(&caller.json["huge"]) < 1400,
        "the oversized call was not failed promptly: {}",
        caller.json
    );
    assert_eq!(caller.json["slow"]["answeredBy"]["A"], 5, "{}", caller.json);
    let other = other.finish().await;
    other.assert_ok();
    assert_eq!(other.json["slow"]["answeredBy"]["A"], 40, "{}", other.json);
    let probe = peers
        .run(&node, client, &target, &none, &["--connections"])
        .await
        .unwrap();
    probe.assert_ok();
    assert_eq!(
        probe.num("/serverConnections"),
        1,
        "the upstream connection was replaced: {}",
        probe.json
    );
}

fn report_ms(v: &serde_json::Value) -> u64 {
    v["ms"].as_u64().unwrap_or(u64::MAX)
}

/// `protocol: auto`: every protocol's client, HTTP/1.1 and h2c (curl) on the same
/// port, each routed by path to a cluster speaking its protocol, all at the same
/// time. Run once with the drivers of all the protocols.
pub(crate) async fn auto_listener_serves_every_protocol_and_http(all: &[Peers]) {
    let Some(node) = all.first().and_then(Peers::node) else {
        return;
    };
    let mut servers = Vec::new();
    let mut routes = String::new();
    let mut clusters = Vec::new();
    for peers in all {
        let (p, name) = (peers.proto, peers.proto.name());
        let server = node
            .server(name, name, &["--echo-service", p.echo_alias()])
            .await;
        let cluster_name = format!("{name}_cluster");
        routes += &route(p.echo_alias(), &cluster_name);
        clusters.push(cluster(&cluster_name, name, &[server.addr()]));
        servers.push(server);
    }
    routes += &route("http", "http_cluster");
    let http = Upstream::http(|_| {
        let mut resp = response(200, "plain http");
        resp.headers_mut().insert(
            "content-type",
            "text/plain".parse().expect("a header value"),
        );
        resp
    });
    clusters.push(cluster("http_cluster", "http1", &[http.addr.to_string()]));
    let proxy = start(&config(&[listener("any", "auto", &routes)], &clusters));
    let target = proxy.addr_text("any");
    let phases = Phases {
        calls: 300,
        concurrency: 30,
        heartbeats: 2,
        ..Phases::default()
    };
    let running: Vec<_> = all
        .iter()
        .map(|peers| {
            let service = ["--service", peers.proto.echo_alias()];
            let client = peers.main_client();
            let run = peers.spawn(&node, client, &target, &phases, &service);
            (client, run.unwrap())
        })
        .collect();
    for _ in 0..5 {
        let resp = raw::get(proxy.addr("any"), "/http/hello", &[]).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.ends_with("plain http"), "{resp}");
    }
    // HTTP/2 with prior knowledge (the preface) on the same port, by curl.
    match tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "--http2-prior-knowledge"])
        .arg(format!("http://{target}/http/h2"))
        .output()
        .await
    {
        Ok(out) => {
            assert!(out.status.success(), "curl h2c: {out:?}");
            assert_eq!(String::from_utf8_lossy(&out.stdout), "plain http");
        }
        Err(e) => eprintln!("SKIPPED (h2c part): curl not runnable: {e}"),
    }
    for (client, run) in running {
        let report = run.finish().await;
        report.assert_ok();
        assert_eq!(report.num("/calls/ok"), 300, "{client:?}");
        assert_eq!(client.heartbeats_answered(&report), 2, "{client:?}");
    }
}
