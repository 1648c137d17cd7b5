//! The proxy drains with a real client's calls in flight on one connection
//! (`drain_client.js`: sofa-rpc-node over Bolt, dubbo2.js over Dubbo) and
//! sofa-rpc-node's server answering after a delay: every call sent before the drain
//! gets its own answer, every call sent after it on the same connection fails at once
//! with the protocol's "server closing" error (not a timeout, not a closed socket),
//! and the connection ends without a reset. Several rounds, each with a fresh proxy:
//! the lost answers this guards against came in 2 runs of 7.
//!
//! Needs node and the packages `scripts/deps/proxy-codec.sh` installs; without them
//! the tests print `SKIPPED:` and pass.

#![allow(clippy::unwrap_used)]

use crate::peers;

use std::time::Duration;

use proxy_core::Registry;
use proxy_test_support::{temp::TempDir, yaml, TestServer};

use self::peers::Node;

/// Rounds per protocol.
const ROUNDS: usize = 5;
/// Calls in flight when the drain starts, and calls sent after it.
const CALLS: &str = "100";
const LATE: &str = "10";
/// How long the server takes to answer a call before the drain.
const SLOW_MS: &str = "1500";

/// The proxy with one `protocol` listener (`rpc`) sending every call to `server`,
/// with a drain timeout well past the calls' delay.
fn start(protocol: &str, server: &str) -> TestServer {
    let kind = format!("protocol: {protocol}");
    let yaml = format!(
        "runtime:\n  worker_threads: 1\n  drain_timeout: 10s\nlisteners:\n{}clusters:\n{}",
        yaml::listener("rpc", "servers", &[&kind]),
        yaml::cluster("servers", &[server], &[&kind]),
    );
    let mut registry = Registry::default();
    proxy_codec::register(&mut registry);
    TestServer::start(&yaml, registry)
}

/// [`ROUNDS`] rounds of: calls in flight, the proxy drains, late calls on the same
/// connection; `protocol` is `bolt` or `dubbo`.
pub(crate) async fn drain_delivers_every_answer_owed(protocol: &str, test: &str) {
    let Some(node) = Node::find(test) else { return };
    let server = node.server(protocol, "A", &[]).await;
    for round in 0..ROUNDS {
        let proxy = start(protocol, &server.addr());
        let dir = TempDir::new("proxy-codec-drain");
        let go = dir.join("go");
        let go_arg = go.to_str().unwrap();
        let args = [
            "--protocol",
            protocol,
            "--go-file",
            go_arg,
            "--calls",
            CALLS,
            "--late",
            LATE,
            "--slow-ms",
            SLOW_MS,
        ];
        let mut client = node.spawn_client("drain_client.js", &proxy.addr_text("rpc"), &args);
        client.wait_for_line("SENT").await;
        // The calls leave the client's buffers and reach the server through the proxy.
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.server().shutdown();
        // The drain signal reaches the connection before the late calls do.
        tokio::time::sleep(Duration::from_millis(100)).await;
        std::fs::write(&go, b"go").unwrap();
        let report = client.finish().await;
        assert!(
            report.exit_ok && report.json["ok"] == true,
            "{protocol} round {round}: {}",
            report.json
        );
        assert_eq!(
            report.num("/before/ok"),
            100,
            "round {round}: {}",
            report.json
        );
        assert_eq!(
            report.num("/late/served"),
            0,
            "round {round}: {}",
            report.json
        );
        assert!(
            report.num("/late/maxMs") < 1000,
            "round {round}: {}",
            report.json
        );
        // Joins the proxy's thread: its drain has ended.
        drop(proxy);
    }
}
