//! The README's "Running from a control plane", run as written: the sidecar binary
//! from `configs/xds-bootstrap.yaml` against `xds/control_plane.py` serving
//! `xds/snapshot.json` (proxy-xds's Python ADS server, grpcio and xds-protos from
//! `scripts/deps/proxy-xds.sh`; skipped loudly without them). Only the addresses
//! change, to free ports. A request through the listener LDS sent reaches the demo
//! upstream; the admin endpoint shows the client's metrics and `/config_dump/xds`
//! the resources pushed; an edited snapshot pushed on SIGHUP is followed.

use crate::common;
use crate::xds_support;

use std::time::Duration;

use common::*;
use http::StatusCode;
use proxy_test_support::{client, eventually_async, free_addr, temp::TempDir, with_timeout};
use xds_support::{committed, control_plane, python};

const LIMIT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_runs_from_the_xds_bootstrap() {
    let Some(python) = python() else { return };
    with_timeout(LIMIT, async {
        let (upstream, outbound, inbound, admin) =
            (free_addr(), free_addr(), free_addr(), free_addr());
        let dir = TempDir::new("xds-bootstrap");
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
        let (cp, port) = control_plane(&python, &snapshot, upstream).await;
        let bootstrap = committed(
            "configs/xds-bootstrap.yaml",
            &[
                ("127.0.0.1:15000", admin.to_string()),
                ("127.0.0.1:15006", inbound.to_string()),
                ("127.0.0.1:18000", format!("127.0.0.1:{port}")),
            ],
        );
        let sidecar = Sidecar::start(&bootstrap, admin).await;

        // curl http://127.0.0.1:15001/ : the listener, route, cluster and endpoint
        // all came from the control plane.
        let served = eventually_async(Duration::from_secs(20), || async move {
            let Ok(r) =
                client::request(outbound, http::Method::GET, "/", &[], bytes::Bytes::new()).await
            else {
                return false;
            };
            r.status == StatusCode::OK && r.text() == "hello from the demo upstream\n"
        })
        .await;
        assert!(served, "not served through LDS:\n{}", sidecar.logs());
        // The static listener's route names the cluster the control plane defined.
        let r = client::get(inbound, "/", &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", sidecar.logs());

        let metrics = sidecar.admin_get("/stats/prometheus").await.text();
        for series in [
            "proxy_xds_connected 1",
            "proxy_xds_resources{type=\"clusters\"} 1",
            "proxy_xds_resources{type=\"endpoints\"} 1",
            "proxy_xds_resources{type=\"listeners\"} 1",
            "proxy_xds_resources{type=\"routes\"} 1",
            "proxy_xds_responses_total{type=\"clusters\",result=\"ack\"} 1",
            "proxy_xds_responses_total{type=\"clusters\",result=\"nack\"} 0",
            "proxy_xds_version_info{type=\"listeners\",version=\"1\"} 1",
        ] {
            assert!(metrics.contains(series), "no {series} in\n{metrics}");
        }
        let dump: serde_json::Value =
            serde_json::from_str(&sidecar.admin_get("/config_dump/xds").await.text())
                .expect("config dump JSON");
        assert_eq!(
            dump["types"]["listeners"]["resources"],
            serde_json::json!(["outbound"])
        );
        assert_eq!(
            dump["types"]["routes"]["resources"],
            serde_json::json!(["outbound-routes"])
        );
        assert_eq!(dump["types"]["clusters"]["version"], "1");
        assert_eq!(dump["config"]["clusters"][0]["name"], "demo");
        assert_eq!(
            dump["config"]["clusters"][0]["endpoints"][0]["address"],
            upstream.to_string()
        );
        assert_eq!(
            dump["config"]["listeners"][0]["address"],
            outbound.to_string()
        );

        // The snapshot edited (the endpoint moved to a closed port) and SIGHUP: the
        // sidecar follows, requests now fail upstream, version 2 is reported.
        let moved = snapshot_for(&free_addr().to_string()).replace("\"1\"", "\"2\"");
        std::fs::write(&snapshot, moved).expect("snapshot");
        let pid = cp.id().expect("control plane pid").to_string();
        let hup = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status();
        assert!(hup.map(|s| s.success()).unwrap_or(false), "kill -HUP");
        let followed = eventually_async(Duration::from_secs(20), || async move {
            client::get(outbound, "/", &[])
                .await
                .status
                .is_server_error()
        })
        .await;
        assert!(
            followed,
            "the pushed endpoint change was not followed:\n{}",
            sidecar.logs()
        );
        let metrics = sidecar.admin_get("/stats/prometheus").await.text();
        assert!(
            metrics.contains("proxy_xds_version_info{type=\"endpoints\",version=\"2\"} 1"),
            "{metrics}"
        );
        drop(cp);
    })
    .await;
}
