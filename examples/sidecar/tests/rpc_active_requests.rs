//! A caller that goes away mid-call gives its endpoint's active-request count back,
//! with the real peer the leak was found with: sofa-rpc-node's Bolt client and two
//! sofa-rpc-node Bolt servers behind a `least_request` cluster of the sidecar.
//!
//! The defect: one Bolt client dropped its socket with 21 calls in flight on endpoint
//! B; B showed 21 active forever, and `least_request` sent every later call to A.
//! Here B answers slowly (its process is stopped with SIGSTOP, so it takes the calls
//! and answers nothing until resumed), the client keeps 40 calls in flight, so about
//! half of them pile up on B, and is killed (SIGKILL) mid-call. With B still stopped,
//! so that no answer can release them, both endpoints must show 0 active requests
//! within seconds; once B is resumed, a new client's calls must be spread over both.
//!
//! Needs node and the packages `scripts/deps/proxy-codec.sh` installs; without them
//! the test prints `SKIPPED:` and passes.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use common::*;
use proxy_test_support::{tools, with_timeout};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

const LIMIT: Duration = Duration::from_secs(120);
/// Calls the killed client keeps in flight.
const IN_FLIGHT: &str = "40";
/// Calls on B before the client is killed, at least.
const STUCK_ON_B: u64 = 10;
/// How long the counts may take to come back to 0 after the kill: far below the
/// cluster's `request_timeout` (60 s), so only the caller's going away can do it.
const RELEASE: Duration = Duration::from_secs(5);
/// Calls of the client that follows, and how many it keeps in flight: fewer than
/// the calls stuck on B, so a leaked count would send every call to A.
const LATER_CALLS: u64 = 200;
const LATER_CONCURRENCY: &str = "4";

// === the Node peers ===

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where `scripts/deps/proxy-codec.sh` puts node_modules (a relative
/// `CARGO_TARGET_DIR` counts from the workspace root, as the script takes it).
fn node_modules() -> PathBuf {
    std::env::var_os("PROXY_CODEC_NODE_DEPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| proxy_test_support::python::test_deps_dir().join("proxy-codec"))
        .join("node_modules")
}

/// node_modules with sofa-rpc-node, or `None` after a loud `SKIPPED:` banner.
fn find_peers() -> Option<PathBuf> {
    if !tools::installed("node") {
        return None;
    }
    let modules = node_modules();
    if modules.join("sofa-rpc-node").is_dir() && modules.join("sofa-bolt-node").is_dir() {
        return Some(modules);
    }
    let banner = format!(
        "\n==============================================\n\
         SKIPPED: sofa-rpc-node missing in {} (run scripts/deps/proxy-codec.sh)\n\
         ==============================================\n",
        modules.display()
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), banner.as_bytes());
    None
}

/// `node proxy-codec/tests/interop/SCRIPT`, killed when dropped.
fn node(modules: &Path, script: &str) -> Command {
    let mut cmd = Command::new("node");
    cmd.arg(workspace().join("proxy-codec/tests/interop").join(script))
        .env("NODE_PATH", modules)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    cmd
}

/// A sofa-rpc-node Bolt server (`server.js`) named `name`, and its address.
async fn bolt_server(modules: &Path, name: &str) -> (Child, String) {
    let mut child = node(modules, "server.js")
        .args(["--protocol", "bolt", "--name", name])
        .spawn()
        .expect("spawn node server.js");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("server {name} did not start in 20 s"))
        .unwrap()
        .unwrap_or_default();
    let port: u16 = line
        .strip_prefix("LISTENING ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("server {name} printed {line:?}"));
    (child, format!("127.0.0.1:{port}"))
}

/// Sends `sig` (`STOP`, `CONT`) to a child with `kill`.
fn signal(child: &Child, sig: &str) {
    let pid = child.id().expect("the child is running");
    let status = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {pid} failed");
}

/// Runs `bolt_client.js` to its end and returns its JSON report, which must be ok.
async fn run_client(modules: &Path, target: &str, args: &[&str]) -> serde_json::Value {
    let out = node(modules, "bolt_client.js")
        .args(["--target", target])
        .args(args)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("bolt_client.js did not finish in 60 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON report from bolt_client.js: {stdout}"));
    assert!(
        out.status.success() && report["ok"] == true,
        "bolt_client.js {args:?}: {report}"
    );
    report
}

// === the sidecar's view ===

/// One endpoint of cluster `servers` as `/clusters` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    requests: u64,
    active: u64,
}

/// The counts of endpoints `a` and `b` of cluster `servers`.
async fn counts(sc: &Sidecar, a: &str, b: &str) -> (Counts, Counts) {
    let r = sc.admin_get("/clusters").await;
    let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let cluster = json["clusters"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "servers"))
        .unwrap_or_else(|| panic!("no cluster servers in {json:#}"));
    let endpoint = |addr: &str| {
        let e = cluster["endpoints"]
            .as_array()
            .and_then(|es| es.iter().find(|e| e["address"] == addr))
            .unwrap_or_else(|| panic!("no endpoint {addr} in {cluster:#}"));
        Counts {
            requests: e["requests"].as_u64().unwrap(),
            active: e["active_requests"].as_u64().unwrap(),
        }
    };
    (endpoint(a), endpoint(b))
}

// === the test ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bolt_caller_killed_mid_call_releases_its_active_requests() {
    let Some(modules) = find_peers() else { return };
    with_timeout(LIMIT, async {
        let (_a, a) = bolt_server(&modules, "A").await;
        let (b_server, b) = bolt_server(&modules, "B").await;
        let mut cfg = ConfigBuilder::new()
            .routes(vec![route(
                "echo",
                "/com.example.EchoService",
                "servers",
                "",
            )])
            .cluster(format!(
                "{{name: servers, protocol: bolt, lb: least_request, endpoints: [\"{a}\", \"{b}\"], \
                 protocol_options: {{request_timeout: 60s}}}}"
            ));
        cfg.protocol = "bolt".into();
        let sc = Sidecar::start_with(&mut cfg).await;
        let target = cfg.listen.to_string();

        // Both endpoints answer through the proxy.
        let report = run_client(&modules, &target, &["--calls", "20", "--concurrency", "2"]).await;
        assert_eq!(report["calls"]["ok"], 20, "{report}");

        // B stops answering; a client keeps 40 calls in flight until about half of
        // them wait on B (A answers its share at once, and they are sent again).
        signal(&b_server, "STOP");
        let mut holder = node(&modules, "bolt_client.js")
            .args(["--target", &target, "--calls", "1000000"])
            .args(["--concurrency", IN_FLIGHT, "--timeout", "600000"])
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn node bolt_client.js");
        let deadline = Instant::now() + Duration::from_secs(20);
        let stuck = loop {
            let (_, on_b) = counts(&sc, &a, &b).await;
            if on_b.active >= STUCK_ON_B {
                // Let the pile settle, then read it.
                tokio::time::sleep(Duration::from_millis(300)).await;
                break counts(&sc, &a, &b).await.1.active;
            }
            assert!(
                Instant::now() < deadline,
                "only {} calls waiting on B after 20 s\n{}",
                on_b.active,
                sc.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(
            holder.try_wait().unwrap().is_none(),
            "the client ended before it was killed"
        );
        eprintln!("{stuck} calls in flight on B when the client is killed");

        // The client dies mid-call; B, still stopped, answers none of its calls.
        holder.kill().await.unwrap();
        let killed = Instant::now();
        let released = loop {
            let (on_a, on_b) = counts(&sc, &a, &b).await;
            if on_a.active == 0 && on_b.active == 0 {
                break killed.elapsed();
            }
            assert!(
                killed.elapsed() < RELEASE,
                "{RELEASE:?} after the client was killed, A shows {} and B {} active \
                 requests (B held {stuck})\n{}",
                on_a.active,
                on_b.active,
                sc.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        eprintln!("active requests back to 0 {released:?} after the kill");

        // B answers again (its late answers to the dead client go nowhere); a new
        // client's calls, fewer in flight than B held, go to both endpoints.
        signal(&b_server, "CONT");
        let (before_a, before_b) = counts(&sc, &a, &b).await;
        let args = ["--calls", "200", "--concurrency", LATER_CONCURRENCY];
        let report = run_client(&modules, &target, &args).await;
        assert_eq!(report["calls"]["ok"], LATER_CALLS, "{report}");
        let (after_a, after_b) = counts(&sc, &a, &b).await;
        let (to_a, to_b) = (
            after_a.requests - before_a.requests,
            after_b.requests - before_b.requests,
        );
        eprintln!("later calls: {to_a} to A, {to_b} to B");
        assert_eq!(to_a + to_b, LATER_CALLS, "every call counted once");
        assert!(
            to_a >= LATER_CALLS / 5 && to_b >= LATER_CALLS / 5,
            "least_request sent {to_a} calls to A and {to_b} to B"
        );
        assert_eq!((after_a.active, after_b.active), (0, 0));
    })
    .await;
}
