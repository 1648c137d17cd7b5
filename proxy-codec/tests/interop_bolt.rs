//! Interop with real third-party Bolt peers through the proxy: sofa-rpc-node's
//! `RpcClient` (sofa-bolt-node, hessian2) calling sofa-rpc-node's `RpcServer`
//! through a `protocol: bolt` listener and a `protocol: bolt` cluster.
//!
//! Needs node and the packages `scripts/deps/proxy-codec.sh` installs; without them
//! those tests print `SKIPPED:` and pass. The captured-frame tests need nothing.

#![allow(clippy::unwrap_used)]

#[path = "interop/support.rs"]
mod support;

use support::{
    closed_port, cluster, config, fixture, frame_id, listener, read_frame, replay_upstream, route,
    route_regex, route_with_timeout, silent_upstream, with_id, Node, Proxy, Wire, TEST_LIMIT,
};
use tokio::io::AsyncWriteExt;

const ECHO: &str = "com.example.EchoService";
const OTHER: &str = "com.example.OtherService";

/// A Bolt listener routing the echo and other services to one cluster of `servers`.
fn one_cluster(servers: &[String]) -> String {
    let routes = route(ECHO, "bolt_servers") + &route(OTHER, "bolt_servers");
    config(
        &[listener("bolt", "bolt", &routes)],
        &[cluster("bolt_servers", "bolt", servers)],
    )
}

/// The peers themselves, with no proxy between them: when this fails, the Node
/// packages are broken, not the proxy.
#[tokio::test]
async fn bolt_peers_work_directly() {
    let Some(node) = Node::find("bolt_peers_work_directly") else {
        return;
    };
    tokio::time::timeout(TEST_LIMIT, async {
        let server = node.server("bolt", "A", &[]).await;
        for version in [&[][..], &["--bolt-version", "2", "--crc"][..]] {
            let mut args = vec!["--calls", "300", "--concurrency", "50", "--heartbeats", "2"];
            args.extend_from_slice(version);
            args.extend_from_slice(&["--oneway", "1", "--unknown", "--big", "2"]);
            let report = node.client("bolt_client.js", &server.addr(), &args).await;
            report.assert_ok();
            assert_eq!(report.num("/calls/ok"), 300);
        }
    })
    .await
    .expect("test timed out");
}

/// Two clients at once, each with many calls in flight on its one connection (and a
/// few 100 kB arguments, so frames span many reads): every answer reaches its own
/// caller (the clients' request ids collide, so the proxy's id rewriting on shared
/// upstream connections is exercised); heartbeats are answered; one-way requests pass
/// without disturbing the connection; a service with no route gets Bolt's error
/// answer, not a timeout.
#[tokio::test]
async fn bolt_v1_calls_heartbeats_oneway_and_no_route() {
    let Some(node) = Node::find("bolt_v1_calls_heartbeats_oneway_and_no_route") else {
        return;
    };
    tokio::time::timeout(TEST_LIMIT, async {
        let server = node.server("bolt", "A", &[]).await;
        let proxy = Proxy::start(&one_cluster(&[server.addr()]));
        let target = proxy.addr("bolt");
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
        let first = node.spawn_client("bolt_client.js", &target, &args);
        let second = node.spawn_client("bolt_client.js", &target, &args);
        for report in [first.finish().await, second.finish().await] {
            report.assert_ok();
            assert_eq!(report.num("/calls/ok"), 1500, "{}", report.json);
            assert_eq!(report.num("/calls/mismatched"), 0);
            assert_eq!(report.num("/big/ok"), 8, "{}", report.json);
            assert_eq!(report.num("/heartbeats/acked"), 5);
            assert_eq!(report.json["oneway"]["followUp"], true);
            assert_eq!(report.num("/connections"), 1);
            let err = report.str("/unknown/error");
            assert!(
                !err.contains("RpcResponseTimeoutError"),
                "no-route call timed out: {err}"
            );
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

/// The same through Bolt v2, with and without the CRC32 of each frame.
#[tokio::test]
async fn bolt_v2_with_and_without_crc() {
    let Some(node) = Node::find("bolt_v2_with_and_without_crc") else {
        return;
    };
    tokio::time::timeout(TEST_LIMIT, async {
        let server = node.server("bolt", "A", &[]).await;
        let proxy = Proxy::start(&one_cluster(&[server.addr()]));
        let target = proxy.addr("bolt");
        for crc in [true, false] {
            let mut args = vec![
                "--bolt-version",
                "2",
                "--calls",
                "500",
                "--concurrency",
                "50",
                "--heartbeats",
                "3",
                "--oneway",
                "2",
                "--unknown",
            ];
            if crc {
                args.push("--crc");
            }
            let report = node.client("bolt_client.js", &target, &args).await;
            report.assert_ok();
            assert_eq!(report.str("/protocol/type"), "bolt2");
            assert_eq!(report.json["protocol"]["crc"], crc);
            assert_eq!(report.num("/calls/ok"), 500);
            assert_eq!(report.num("/heartbeats/acked"), 3);
            assert!(!report
                .str("/unknown/error")
                .contains("RpcResponseTimeoutError"));
        }
    })
    .await
    .expect("test timed out");
}

/// Two Bolt services on one listener go to two different clusters, and a route on one
/// method beats its service's route.
#[tokio::test]
async fn bolt_routes_services_to_different_clusters() {
    let Some(node) = Node::find("bolt_routes_services_to_different_clusters") else {
        return;
    };
    tokio::time::timeout(TEST_LIMIT, async {
        let a = node.server("bolt", "A", &[]).await;
        let b = node.server("bolt", "B", &[]).await;
        // A method-level route first: EchoService's whoami goes to B, the rest of
        // EchoService to A (Bolt's path carries the unique name `service:version`).
        let routes = route_regex(
            r"/com\.example\.EchoService(:1\.0)?/whoami",
            "other_cluster",
        ) + &route(ECHO, "echo_cluster")
            + &route(OTHER, "other_cluster");
        let yaml = config(
            &[listener("bolt", "bolt", &routes)],
            &[
                cluster("echo_cluster", "bolt", &[a.addr()]),
                cluster("other_cluster", "bolt", &[b.addr()]),
            ],
        );
        let proxy = Proxy::start(&yaml);
        let report = node
            .client(
                "bolt_client.js",
                &proxy.addr("bolt"),
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

/// One of two servers is killed with calls in flight: the calls it held fail promptly
/// with an error answer, the other server's calls succeed, and the client's
/// connection to the proxy stays up.
#[tokio::test]
async fn bolt_server_killed_mid_flight_fails_only_its_calls() {
    let Some(node) = Node::find("bolt_server_killed_mid_flight_fails_only_its_calls") else {
        return;
    };
    tokio::time::timeout(TEST_LIMIT, async {
        let mut a = node.server("bolt", "A", &[]).await;
        let b = node.server("bolt", "B", &[]).await;
        let proxy = Proxy::start(&one_cluster(&[a.addr(), b.addr()]));
        let mut client = node.spawn_client(
            "bolt_client.js",
            &proxy.addr("bolt"),
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
                !error.contains("RpcResponseTimeoutError"),
                "a failed call timed out: {error}"
            );
            assert!(
                !error.contains("RpcSocketCloseError"),
                "the proxy closed the client connection: {error}"
            );
            assert!(ms < 2800, "a failed call was answered only after {ms} ms");
        }
        assert_eq!(report.num("/connections"), 1);
    })
    .await
    .expect("test timed out");
}

/// The content (last `contentLen` bytes) of a Bolt v1 frame.
fn bolt_v1_content(frame: &[u8]) -> &[u8] {
    let at = if frame[1] == 0 { 16 } else { 18 };
    let len = u32::from_be_bytes(frame[at..at + 4].try_into().unwrap()) as usize;
    &frame[frame.len() - len..]
}

/// Frames captured from sofa-rpc-node (tests/fixtures), replayed on a raw socket, so
/// this runs without node: the proxy answers a heartbeat itself; a one-way request
/// gets no answer; a request reaches the upstream and its captured answer comes back
/// under the caller's id with the content unchanged; ten requests written at once
/// are all answered under their own ids; a service with no route gets a Bolt error
/// status under its id.
#[tokio::test]
async fn bolt_captured_frames_through_proxy() {
    tokio::time::timeout(TEST_LIMIT, async {
        let response = fixture("bolt_v1_response");
        let upstream = replay_upstream(
            Wire::Bolt,
            response.clone(),
            fixture("bolt_v1_heartbeat_ack"),
        )
        .await;
        let proxy = Proxy::start(&one_cluster(&[upstream]));
        let mut s = tokio::net::TcpStream::connect(proxy.addr("bolt"))
            .await
            .unwrap();
        let mut buf = Vec::new();

        s.write_all(&with_id(Wire::Bolt, &fixture("bolt_v1_heartbeat"), 7))
            .await
            .unwrap();
        let ack = read_frame(Wire::Bolt, &mut s, &mut buf).await;
        assert_eq!(
            (ack[0], ack[1], &ack[2..4]),
            (1, 0, &[0u8, 0][..]),
            "not a heartbeat ack: {ack:02x?}"
        );
        assert_eq!(frame_id(Wire::Bolt, &ack), 7);

        s.write_all(&with_id(Wire::Bolt, &fixture("bolt_v1_oneway_request"), 8))
            .await
            .unwrap();
        s.write_all(&with_id(Wire::Bolt, &fixture("bolt_v1_request"), 9))
            .await
            .unwrap();
        let answer = read_frame(Wire::Bolt, &mut s, &mut buf).await;
        assert_eq!(
            frame_id(Wire::Bolt, &answer),
            9,
            "the first answer is not the two-way request's"
        );
        assert_eq!(
            &answer[10..12],
            &[0, 0],
            "status not success: {answer:02x?}"
        );
        assert_eq!(
            bolt_v1_content(&answer),
            bolt_v1_content(&response),
            "content changed on the way"
        );

        let request = fixture("bolt_v1_request");
        let batch: Vec<u8> = (100..110)
            .flat_map(|id| with_id(Wire::Bolt, &request, id))
            .collect();
        s.write_all(&batch).await.unwrap();
        let mut ids = Vec::new();
        for _ in 0..10 {
            ids.push(frame_id(
                Wire::Bolt,
                &read_frame(Wire::Bolt, &mut s, &mut buf).await,
            ));
        }
        ids.sort_unstable();
        assert_eq!(ids, (100..110).collect::<Vec<u64>>());

        s.write_all(&with_id(
            Wire::Bolt,
            &fixture("bolt_v1_request_unknown_service"),
            11,
        ))
        .await
        .unwrap();
        let error = read_frame(Wire::Bolt, &mut s, &mut buf).await;
        assert_eq!(frame_id(Wire::Bolt, &error), 11);
        assert_eq!(error[1], 0, "not a response: {error:02x?}");
        assert_eq!(
            &error[10..12],
            &[0, 6],
            "no route: expected NO_PROCESSOR: {error:02x?}"
        );
    })
    .await
    .expect("test timed out");
}

/// Proxy-side failures on the wire, in Bolt's own statuses, each under the caller's
/// id: an unreachable upstream answers CLIENT_SEND_ERROR (8), a route timeout
/// TIMEOUT (7), and the connection carries on after both.
#[tokio::test]
async fn bolt_proxy_failures_answered_with_bolt_statuses() {
    tokio::time::timeout(TEST_LIMIT, async {
        let routes = route(ECHO, "dead")
            + &route_with_timeout("com.example.NoSuchService", "silent", "300ms");
        let yaml = config(
            &[listener("bolt", "bolt", &routes)],
            &[
                cluster("dead", "bolt", &[closed_port()]),
                cluster("silent", "bolt", &[silent_upstream().await]),
            ],
        );
        let proxy = Proxy::start(&yaml);
        let mut s = tokio::net::TcpStream::connect(proxy.addr("bolt"))
            .await
            .unwrap();
        let mut buf = Vec::new();
        for round in 0..2u64 {
            s.write_all(&with_id(
                Wire::Bolt,
                &fixture("bolt_v1_request"),
                20 + round,
            ))
            .await
            .unwrap();
            let dead = read_frame(Wire::Bolt, &mut s, &mut buf).await;
            assert_eq!(frame_id(Wire::Bolt, &dead), 20 + round);
            assert_eq!(&dead[10..12], &[0, 8], "unreachable upstream: {dead:02x?}");

            let started = std::time::Instant::now();
            s.write_all(&with_id(
                Wire::Bolt,
                &fixture("bolt_v1_request_unknown_service"),
                30 + round,
            ))
            .await
            .unwrap();
            let late = read_frame(Wire::Bolt, &mut s, &mut buf).await;
            assert_eq!(frame_id(Wire::Bolt, &late), 30 + round);
            assert_eq!(&late[10..12], &[0, 7], "route timeout: {late:02x?}");
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
async fn bolt_downstream_connections_share_one_upstream_connection() {
    let Some(node) = Node::find("bolt_downstream_connections_share_one_upstream_connection") else {
        return;
    };
    tokio::time::timeout(TEST_LIMIT, async {
        let server = node.server("bolt", "A", &[]).await;
        let proxy = Proxy::start(&one_cluster(&[server.addr()]));
        let target = proxy.addr("bolt");
        let slow = ["--slow", "10", "--slow-ms", "1500", "--timeout", "8000"];
        let mut first = node.spawn_client("bolt_client.js", &target, &slow);
        let mut second = node.spawn_client("bolt_client.js", &target, &slow);
        first.wait_for_line("SENT").await;
        second.wait_for_line("SENT").await;
        let probe = node
            .client("bolt_client.js", &target, &["--connections"])
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
