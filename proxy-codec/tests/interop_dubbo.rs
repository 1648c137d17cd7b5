//! Interop with real third-party Dubbo peers through the proxy: dubbo2.js's
//! `DirectlyDubbo` client and PyPI dubbo-ssl-python (each with its own hessian2)
//! calling sofa-rpc-node's `RpcServer` speaking Dubbo through
//! js-remoting-for-apache-dubbo, via a `protocol: dubbo` listener and a
//! `protocol: dubbo` cluster; and one `protocol: auto` listener serving Bolt, Dubbo,
//! HTTP/1.1 and h2c on the same port.
//!
//! Needs node, python3 and the packages `scripts/deps/proxy-codec.sh` installs;
//! without them those tests print `SKIPPED:` and pass. The captured-frame tests need
//! nothing.

#![allow(clippy::unwrap_used)]

#[path = "interop/support.rs"]
mod support;

use support::{
    closed_port, cluster, config, fixture, frame_id, http_get, http_upstream, listener, read_frame,
    replay_upstream, route, route_regex, route_with_timeout, silent_upstream, with_id, Node, Proxy,
    Python, Wire, TEST_LIMIT,
};
use tokio::io::AsyncWriteExt;

const ECHO: &str = "com.example.EchoService";
const OTHER: &str = "com.example.OtherService";

/// A Dubbo listener routing the echo and other services to one cluster of `servers`.
fn one_cluster(servers: &[String]) -> String {
    let routes = route(ECHO, "dubbo_servers") + &route(OTHER, "dubbo_servers");
    config(
        &[listener("dubbo", "dubbo", &routes)],
        &[cluster("dubbo_servers", "dubbo", servers)],
    )
}

/// The peers themselves, with no proxy between them: when this fails, the Node or
/// Python packages are broken, not the proxy.
#[tokio::test]
async fn dubbo_peers_work_directly() {
    let Some(node) = Node::find("dubbo_peers_work_directly") else {
        return;
    };
    tokio::time::timeout(TEST_LIMIT, async {
        let server = node.server("dubbo", "D", &[]).await;
        let args = [
            "--calls",
            "300",
            "--concurrency",
            "50",
            "--heartbeats",
            "2",
            "--oneway",
            "1",
            "--unknown",
            "--big",
            "2",
        ];
        let report = node.client("dubbo_client.js", &server.addr(), &args).await;
        report.assert_ok();
        assert_eq!(report.num("/calls/ok"), 300);
        if let Some(python) = Python::find("dubbo_peers_work_directly (python part)") {
            let report = python
                .client(
                    &server.addr(),
                    &["--calls", "100", "--heartbeats", "2", "--unknown"],
                )
                .await;
            report.assert_ok();
            assert_eq!(report.num("/calls/ok"), 100);
        }
    })
    .await
    .expect("test timed out");
}

/// Two dubbo2.js clients at once, each with many calls in flight on its one socket (and
/// a few 100 kB arguments, so frames span many reads): every answer reaches its own
/// caller (both clients number requests from 1, so the proxy must rewrite ids on the
/// shared upstream connections); heartbeat events are answered; one-way requests
/// pass; a service with no route gets a Dubbo error status, not a timeout.
#[tokio::test]
async fn dubbo_calls_heartbeats_oneway_and_no_route() {
    let Some(node) = Node::find("dubbo_calls_heartbeats_oneway_and_no_route") else {
        return;
    };
    tokio::time::timeout(TEST_LIMIT, async {
        let server = node.server("dubbo", "D", &[]).await;
        let proxy = Proxy::start(&one_cluster(&[server.addr()]));
        let target = proxy.addr("dubbo");
        let args = [
            "--calls",
            "1500",
            "--concurrency",
            "100",
            "--heartbeats",
            "5",
            "--oneway",
            "3",
            "--unknown",
            "--big",
            "8",
        ];
        let first = node.spawn_client("dubbo_client.js", &target, &args);
        let second = node.spawn_client("dubbo_client.js", &target, &args);
        for report in [first.finish().await, second.finish().await] {
            report.assert_ok();
            assert_eq!(report.num("/calls/ok"), 1500, "{}", report.json);
            assert_eq!(report.num("/calls/mismatched"), 0);
            assert_eq!(report.num("/big/ok"), 8, "{}", report.json);
            assert_eq!(report.num("/heartbeats/answered"), 5);
            assert_eq!(report.json["heartbeats"]["followUp"], true);
            assert_eq!(report.json["oneway"]["followUp"], true);
            assert_eq!(report.num("/connections"), 1);
            let err = report.str("/unknown/error");
            assert!(!err.contains("timeout"), "no-route call timed out: {err}");
            assert!(
                report.num("/unknown/ms") < 3000,
                "no-route answer took too long: {}",
                report.json
            );
        }
    })
    .await
    .expect("test timed out");
}

/// A second, independent Dubbo client through the proxy: PyPI dubbo-ssl-python (its
/// own hessian2, Dubbo version 2.0.2, one multiplexed connection) with many calls from
/// threads, its own heartbeats, and a service with no route.
#[tokio::test]
async fn dubbo_python_client_through_proxy() {
    let Some(node) = Node::find("dubbo_python_client_through_proxy") else {
        return;
    };
    let Some(python) = Python::find("dubbo_python_client_through_proxy") else {
        return;
    };
    tokio::time::timeout(TEST_LIMIT, async {
        let server = node.server("dubbo", "D", &[]).await;
        let proxy = Proxy::start(&one_cluster(&[server.addr()]));
        let report = python
            .client(
                &proxy.addr("dubbo"),
                &[
                    "--calls",
                    "500",
                    "--concurrency",
                    "32",
                    "--heartbeats",
                    "3",
                    "--unknown",
                ],
            )
            .await;
        report.assert_ok();
        assert_eq!(report.num("/calls/ok"), 500, "{}", report.json);
        assert_eq!(report.num("/heartbeats/answered"), 3);
        assert_eq!(report.num("/connections"), 1);
        assert!(report.num("/unknown/ms") < 3000, "{}", report.json);
    })
    .await
    .expect("test timed out");
}

/// Two Dubbo services on one listener go to two different clusters, and a route on one
/// method beats its service's route.
#[tokio::test]
async fn dubbo_routes_services_to_different_clusters() {
    let Some(node) = Node::find("dubbo_routes_services_to_different_clusters") else {
        return;
    };
    tokio::time::timeout(TEST_LIMIT, async {
        let a = node.server("dubbo", "A", &[]).await;
        let b = node.server("dubbo", "B", &[]).await;
        // A method-level route first: EchoService's whoami goes to B, the rest of
        // EchoService to A (Bolt's path carries the unique name `service:version`).
        let routes = route_regex(
            r"/com\.example\.EchoService(:1\.0)?/whoami",
            "other_cluster",
        ) + &route(ECHO, "echo_cluster")
            + &route(OTHER, "other_cluster");
        let yaml = config(
            &[listener("dubbo", "dubbo", &routes)],
            &[
                cluster("echo_cluster", "dubbo", &[a.addr()]),
                cluster("other_cluster", "dubbo", &[b.addr()]),
            ],
        );
        let proxy = Proxy::start(&yaml);
        let report = node
            .client(
                "dubbo_client.js",
                &proxy.addr("dubbo"),
                &[
                    "--whoami",
                    &format!("{ECHO},{OTHER}"),
                    "--slow",
                    "6",
                    "--slow-ms",
                    "1",
                ],
            )
            .await;
        report.assert_ok();
        assert_eq!(report.json["whoami"][ECHO], "B", "{}", report.json);
        assert_eq!(report.json["slow"]["answeredBy"]["A"], 6, "{}", report.json);
        assert_eq!(report.json["whoami"][OTHER], "B/other", "{}", report.json);
    })
    .await
    .expect("test timed out");
}

/// One of two servers is killed with calls in flight: its calls fail promptly with a
/// Dubbo error status, the other server's calls succeed, and the client's socket to
/// the proxy stays up (dubbo2.js would otherwise reconnect and time the calls out).
#[tokio::test]
async fn dubbo_server_killed_mid_flight_fails_only_its_calls() {
    let Some(node) = Node::find("dubbo_server_killed_mid_flight_fails_only_its_calls") else {
        return;
    };
    tokio::time::timeout(TEST_LIMIT, async {
        let mut a = node.server("dubbo", "A", &[]).await;
        let b = node.server("dubbo", "B", &[]).await;
        let proxy = Proxy::start(&one_cluster(&[a.addr(), b.addr()]));
        let mut client = node.spawn_client(
            "dubbo_client.js",
            &proxy.addr("dubbo"),
            &["--slow", "40", "--slow-ms", "3000", "--timeout", "8000"],
        );
        client.wait_for_line("SENT").await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        a.kill().await;
        let report = client.finish().await;
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
            assert!(
                !error.contains("timeout"),
                "a failed call timed out: {error}"
            );
            assert!(ms < 2800, "a failed call was answered only after {ms} ms");
        }
        assert_eq!(report.num("/connections"), 1);
    })
    .await
    .expect("test timed out");
}

/// `protocol: auto`: Bolt, Dubbo, HTTP/1.1 and h2c (curl) clients on the same port,
/// each routed by path to a cluster speaking its protocol, all at the same time.
#[tokio::test]
async fn auto_listener_serves_bolt_dubbo_and_http_on_one_port() {
    let Some(node) = Node::find("auto_listener_serves_bolt_dubbo_and_http_on_one_port") else {
        return;
    };
    tokio::time::timeout(TEST_LIMIT, async {
        const BOLT_ECHO: &str = "com.example.BoltEcho";
        const DUBBO_ECHO: &str = "com.example.DubboEcho";
        let bolt = node
            .server("bolt", "bolt", &["--echo-service", BOLT_ECHO])
            .await;
        let dubbo = node
            .server("dubbo", "dubbo", &["--echo-service", DUBBO_ECHO])
            .await;
        let http = http_upstream("plain http").await;
        let routes = route(BOLT_ECHO, "bolt_cluster")
            + &route(DUBBO_ECHO, "dubbo_cluster")
            + &route("http", "http_cluster");
        let yaml = config(
            &[listener("any", "auto", &routes)],
            &[
                cluster("bolt_cluster", "bolt", &[bolt.addr()]),
                cluster("dubbo_cluster", "dubbo", &[dubbo.addr()]),
                cluster("http_cluster", "http1", &[http]),
            ],
        );
        let proxy = Proxy::start(&yaml);
        let target = proxy.addr("any");
        let bolt_client = node.spawn_client(
            "bolt_client.js",
            &target,
            &[
                "--service",
                BOLT_ECHO,
                "--calls",
                "300",
                "--concurrency",
                "30",
                "--heartbeats",
                "2",
            ],
        );
        let dubbo_client = node.spawn_client(
            "dubbo_client.js",
            &target,
            &[
                "--service",
                DUBBO_ECHO,
                "--calls",
                "300",
                "--concurrency",
                "30",
                "--heartbeats",
                "2",
            ],
        );
        for _ in 0..5 {
            let resp = http_get(&target, "/http/hello").await;
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
        let b = bolt_client.finish().await;
        b.assert_ok();
        assert_eq!(b.num("/calls/ok"), 300);
        assert_eq!(b.num("/heartbeats/acked"), 2);
        let d = dubbo_client.finish().await;
        d.assert_ok();
        assert_eq!(d.num("/calls/ok"), 300);
        assert_eq!(d.num("/heartbeats/answered"), 2);
    })
    .await
    .expect("test timed out");
}

/// Frames captured from dubbo2.js and js-remoting-for-apache-dubbo (tests/fixtures),
/// replayed on a raw socket, so this runs without node: the proxy answers a heartbeat
/// event itself; a one-way request gets no answer; a two-way request reaches the
/// upstream and its captured answer comes back under the caller's id with the body
/// unchanged; ten requests written at once are all answered under their own ids; a
/// service with no route gets a Dubbo error status under its id.
#[tokio::test]
async fn dubbo_captured_frames_through_proxy() {
    tokio::time::timeout(TEST_LIMIT, async {
        let response = fixture("dubbo_response");
        let upstream = replay_upstream(
            Wire::Dubbo,
            response.clone(),
            fixture("dubbo_heartbeat_response"),
        )
        .await;
        let proxy = Proxy::start(&one_cluster(&[upstream]));
        let mut s = tokio::net::TcpStream::connect(proxy.addr("dubbo"))
            .await
            .unwrap();
        let mut buf = Vec::new();

        s.write_all(&with_id(
            Wire::Dubbo,
            &fixture("dubbo_heartbeat_request"),
            7,
        ))
        .await
        .unwrap();
        let pong = read_frame(Wire::Dubbo, &mut s, &mut buf).await;
        assert_eq!(pong[2] & 0xa0, 0x20, "not an event response: {pong:02x?}");
        assert_eq!(pong[3], 20, "heartbeat answer status: {pong:02x?}");
        assert_eq!(frame_id(Wire::Dubbo, &pong), 7);

        s.write_all(&with_id(Wire::Dubbo, &fixture("dubbo_oneway_request"), 8))
            .await
            .unwrap();
        s.write_all(&with_id(Wire::Dubbo, &fixture("dubbo_request"), 9))
            .await
            .unwrap();
        let answer = read_frame(Wire::Dubbo, &mut s, &mut buf).await;
        assert_eq!(
            frame_id(Wire::Dubbo, &answer),
            9,
            "the first answer is not the two-way request's"
        );
        assert_eq!(answer[2] & 0xa0, 0, "not a plain response: {answer:02x?}");
        assert_eq!(answer[3], 20, "status not OK: {answer:02x?}");
        assert_eq!(&answer[16..], &response[16..], "body changed on the way");

        let request = fixture("dubbo_request");
        let batch: Vec<u8> = (100..110)
            .flat_map(|id| with_id(Wire::Dubbo, &request, id))
            .collect();
        s.write_all(&batch).await.unwrap();
        let mut ids = Vec::new();
        for _ in 0..10 {
            ids.push(frame_id(
                Wire::Dubbo,
                &read_frame(Wire::Dubbo, &mut s, &mut buf).await,
            ));
        }
        ids.sort_unstable();
        assert_eq!(ids, (100..110).collect::<Vec<u64>>());

        s.write_all(&with_id(
            Wire::Dubbo,
            &fixture("dubbo_request_unknown_service"),
            11,
        ))
        .await
        .unwrap();
        let error = read_frame(Wire::Dubbo, &mut s, &mut buf).await;
        assert_eq!(frame_id(Wire::Dubbo, &error), 11);
        assert_eq!(error[2] & 0x80, 0, "not a response: {error:02x?}");
        assert_eq!(
            error[3], 60,
            "no route: expected SERVICE_NOT_FOUND: {error:02x?}"
        );
    })
    .await
    .expect("test timed out");
}

/// Proxy-side failures on the wire, in Dubbo's own status byte, each under the
/// caller's id: an unreachable upstream answers SERVER_ERROR (80), a route timeout
/// SERVER_TIMEOUT (31), and the connection carries on after both.
#[tokio::test]
async fn dubbo_proxy_failures_answered_with_dubbo_statuses() {
    tokio::time::timeout(TEST_LIMIT, async {
        let routes = route(ECHO, "dead")
            + &route_with_timeout("com.example.NoSuchService", "silent", "300ms");
        let yaml = config(
            &[listener("dubbo", "dubbo", &routes)],
            &[
                cluster("dead", "dubbo", &[closed_port()]),
                cluster("silent", "dubbo", &[silent_upstream().await]),
            ],
        );
        let proxy = Proxy::start(&yaml);
        let mut s = tokio::net::TcpStream::connect(proxy.addr("dubbo"))
            .await
            .unwrap();
        let mut buf = Vec::new();
        for round in 0..2u64 {
            s.write_all(&with_id(Wire::Dubbo, &fixture("dubbo_request"), 20 + round))
                .await
                .unwrap();
            let dead = read_frame(Wire::Dubbo, &mut s, &mut buf).await;
            assert_eq!(frame_id(Wire::Dubbo, &dead), 20 + round);
            assert_eq!(dead[3], 80, "unreachable upstream: {dead:02x?}");

            let started = std::time::Instant::now();
            s.write_all(&with_id(
                Wire::Dubbo,
                &fixture("dubbo_request_unknown_service"),
                30 + round,
            ))
            .await
            .unwrap();
            let late = read_frame(Wire::Dubbo, &mut s, &mut buf).await;
            assert_eq!(frame_id(Wire::Dubbo, &late), 30 + round);
            assert_eq!(late[3], 31, "route timeout: {late:02x?}");
            assert!(started.elapsed() < std::time::Duration::from_secs(5));
        }
    })
    .await
    .expect("test timed out");
}

/// Downstream connections share the pooled upstream connection: while two clients
/// hold calls in flight on their own connections to the proxy, a third asks the
/// server how many connections it has, and the proxy holds one
/// (`connections_per_endpoint` defaults to 1).
#[tokio::test]
async fn dubbo_downstream_connections_share_one_upstream_connection() {
    let Some(node) = Node::find("dubbo_downstream_connections_share_one_upstream_connection")
    else {
        return;
    };
    tokio::time::timeout(TEST_LIMIT, async {
        let server = node.server("dubbo", "A", &[]).await;
        let proxy = Proxy::start(&one_cluster(&[server.addr()]));
        let target = proxy.addr("dubbo");
        let slow = ["--slow", "10", "--slow-ms", "1500", "--timeout", "8000"];
        let mut first = node.spawn_client("dubbo_client.js", &target, &slow);
        let mut second = node.spawn_client("dubbo_client.js", &target, &slow);
        first.wait_for_line("SENT").await;
        second.wait_for_line("SENT").await;
        let probe = node
            .client("dubbo_client.js", &target, &["--connections"])
            .await;
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
    })
    .await
    .expect("test timed out");
}
