//! Roll-back of a hot upgrade with an xDS client: the sidecar runs from
//! `configs/xds-bootstrap.yaml` against `xds/control_plane.py` (grpcio and
//! xds-protos from `scripts/deps/proxy-xds.sh`; skipped loudly without them), a new
//! process takes over and is killed in its hand-off window, and the old process,
//! once it took its listeners back, runs an xDS client again: an endpoint change the
//! control plane pushes after the roll-back is followed. The server taken back has
//! the xDS admin pages, and they follow that client (not the first, gone with the
//! old server): its config dump shows the xDS-sourced listener and cluster and,
//! after the push, the version the new client accepted, as do the `proxy_xds_*`
//! series of its Prometheus page.

use crate::common;
use crate::support;
use crate::xds_support;

use std::{
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use common::*;
use proxy_test_support::{client, eventually_async, free_addr, temp::TempDir, with_timeout};
use support::*;
use tokio::process::Child;
use xds_support::committed;

/// How long a test waits for a line in a process's log.
const LOG_WAIT: Duration = Duration::from_secs(20);

/// The control plane, or `None` (loudly) without grpcio and xds-protos.
async fn control_plane(snapshot: &Path, upstream: SocketAddr) -> Option<(Child, u16)> {
    let python = xds_support::python()?;
    Some(xds_support::control_plane(&python, snapshot, upstream).await)
}

/// The body of a GET of `path` on the admin listener `admin`, which must answer 200.
async fn admin_page(admin: SocketAddr, path: &str) -> String {
    let r = client::request(admin, http::Method::GET, path, &[], bytes::Bytes::new())
        .await
        .expect("admin request");
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.status, http::StatusCode::OK, "{path}: {body}");
    body
}

/// The xDS config dump of `admin`, parsed.
async fn config_dump(admin: SocketAddr) -> serde_json::Value {
    serde_json::from_str(&admin_page(admin, "/config_dump/xds").await).expect("json dump")
}

/// Whether `list` (a JSON array of configs) has one named `name`.
fn has_named(list: &serde_json::Value, name: &str) -> bool {
    list.as_array()
        .is_some_and(|l| l.iter().any(|c| c["name"] == name))
}

/// The version of `kind` (`endpoints`, ...) the followed client accepted, once it is
/// connected and has one (within 20 s) other than `not`.
async fn accepted_version(admin: SocketAddr, kind: &str, not: Option<&str>) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let dump = config_dump(admin).await;
        if let Some(v) = dump["types"][kind]["version"].as_str() {
            if dump["connected"] == true && Some(v) != not {
                return v.to_owned();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no new {kind} version in the dump\n{dump:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether a GET on `addr` is answered `ok` (200 from the demo upstream) or not
/// (a 5xx: the endpoint moved to a closed port), within 20 s.
async fn answers(addr: SocketAddr, ok: bool) -> bool {
    eventually_async(Duration::from_secs(20), || async move {
        match client::request(addr, http::Method::GET, "/", &[], bytes::Bytes::new()).await {
            Ok(r) if ok => r.status == http::StatusCode::OK,
            Ok(r) => r.status.is_server_error(),
            Err(_) => false,
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_xds_client_runs_again_after_a_roll_back() {
    with_timeout(Duration::from_secs(120), async {
        let _heavy = heavy_test_lock().await;
        let (upstream, outbound, inbound, admin) =
            (free_addr(), free_addr(), free_addr(), free_addr());
        let dir = TempDir::new("hot-upgrade-rollback-xds");
        let snapshot = dir.join("snapshot.json");
        let snapshot_for = |endpoint: &str| {
            committed(
                "xds/snapshot.json",
                &[
                    ("127.0.0.1:15001", outbound.to_string()),
                    ("127.0.0.1:18080", endpoint.to_owned()),
                ],
            )
        };
        std::fs::write(&snapshot, snapshot_for(&upstream.to_string())).expect("snapshot");
        let Some((cp, port)) = control_plane(&snapshot, upstream).await else {
            return;
        };
        let config = dir.join("config.yaml");
        let bootstrap = committed(
            "configs/xds-bootstrap.yaml",
            &[
                ("127.0.0.1:15000", admin.to_string()),
                ("127.0.0.1:15006", inbound.to_string()),
                ("127.0.0.1:18000", format!("127.0.0.1:{port}")),
            ],
        );
        std::fs::write(&config, bootstrap).expect("config");
        let mut old = start_sidecar("first", &dir, &config, &[]);
        old.wait_ready(admin).await;
        assert!(
            answers(outbound, true).await,
            "not served through LDS\n{}",
            old.logs()
        );

        // Idle keep-alive connections keep the old process's hand-off window open
        // (it hands them over over the window) until the new process is killed.
        let mut idle = Vec::new();
        for _ in 0..8 {
            let mut s = tokio::net::TcpStream::connect(outbound)
                .await
                .expect("connect");
            assert!(
                matches!(exchange(&mut s, false).await, Exchange::Answer(200, false)),
                "{}",
                old.logs()
            );
            idle.push(s);
        }
        // A new process that takes over, killed in the middle of its window.
        let new = start_sidecar(
            "second",
            &dir,
            &config,
            &["--upgrade", "--upgrade-window", "4s"],
        );
        new.wait_log("took over", 1, LOG_WAIT).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(new);
        old.wait_log("rolled back: accepting again", 1, LOG_WAIT)
            .await;
        assert!(
            answers(outbound, true).await,
            "after the roll-back\n{}",
            old.logs()
        );
        // The server taken back shows the xDS state of the client it runs. (Until
        // the old server drained, it accepts on the admin socket too, with the config
        // it had: wait for it to end.)
        old.wait_log("rolled back: this process serves on", 1, LOG_WAIT)
            .await;
        let before = accepted_version(admin, "endpoints", None).await;
        let dump = config_dump(admin).await;
        assert!(
            has_named(&dump["config"]["listeners"], "outbound")
                && has_named(&dump["config"]["clusters"], "demo"),
            "the dump has no xDS-sourced config\n{dump:#}"
        );
        let metrics = admin_page(admin, "/stats/prometheus").await;
        assert!(metrics.contains("proxy_xds_connected 1\n"), "{metrics}");
        assert!(metrics.contains("proxy_xds_streams_total "), "{metrics}");

        // The control plane pushes the endpoint moved to a closed port: the old
        // process, served by the server it took back, follows.
        let closed = free_addr().to_string();
        let moved = snapshot_for(&closed).replace("\"1\"", "\"2\"");
        std::fs::write(&snapshot, moved).expect("snapshot");
        let pid = cp.id().expect("control plane pid").to_string();
        let hup = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status();
        assert!(hup.map(|s| s.success()).unwrap_or(false), "kill -HUP");
        assert!(
            answers(outbound, false).await,
            "the push after the roll-back was not followed\n{}",
            old.logs()
        );
        // And so do its admin pages: the version the live client accepted, the
        // endpoint it moved to.
        let after = accepted_version(admin, "endpoints", Some(&before)).await;
        let dump = config_dump(admin).await;
        assert!(
            dump["config"]["clusters"].to_string().contains(&closed),
            "{dump:#}"
        );
        let metrics = admin_page(admin, "/stats/prometheus").await;
        let series =
            format!("proxy_xds_version_info{{type=\"endpoints\",version=\"{after}\"}} 1\n");
        assert!(metrics.contains(&series), "no {series:?} in\n{metrics}");
        assert!(old.running(), "{}", old.logs());
        drop(cp);
    })
    .await;
}
