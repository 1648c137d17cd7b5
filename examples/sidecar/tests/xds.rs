//! The sidecar binary with an `xds` section against an in-process ADS control plane:
//! its static route names cluster `web`, which only the control plane defines (CDS
//! then EDS, pointing at a test upstream); requests reach the upstream once both are
//! ACKed, and keep reaching it after a SIGHUP reload of the file. `--validate` checks
//! the section, naming the field.

use crate::common;

use std::{net::SocketAddr, time::Duration};

use common::*;
use http::StatusCode;
use proxy_test_support::{
    client, eventually_async, free_addr,
    temp::TempDir,
    with_timeout,
    xds::{
        resources::{cds, cla, eds, eds_cluster},
        ControlPlane, CLUSTER_TYPE, ENDPOINT_TYPE,
    },
    Upstream,
};

const LIMIT: Duration = Duration::from_secs(60);

// === the sidecar ===

/// A listener `main` on `listen` whose one route names cluster `web`, no static
/// cluster, and the `xds` section for the control plane at `cp`.
fn config(listen: SocketAddr, admin: SocketAddr, cp: SocketAddr) -> String {
    format!(
        "admin: {{address: \"{admin}\"}}\n\
         listeners:\n  - name: main\n    address: \"{listen}\"\n    virtual_hosts:\n      \
         - {{name: all, domains: [\"*\"], routes: [{route}]}}\n\
         xds:\n  servers: [\"{cp}\"]\n  node: {{id: sidecar-test, cluster: app}}\n  \
         backoff: {{initial: 50ms, max: 200ms}}\n",
        route = route("to-web", "/", "web", ""),
    )
}

/// Whether `GET /` through the sidecar answers 200 from the upstream `web`.
async fn reaches_upstream(listen: SocketAddr) -> bool {
    eventually_async(Duration::from_secs(10), || async move {
        let r = client::get(listen, "/", &[]).await;
        r.status == StatusCode::OK && r.text() == "web"
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_from_the_control_plane_carry_traffic() {
    with_timeout(LIMIT, async {
        let upstream = Upstream::named("web");
        let mut cp = ControlPlane::start().await;
        let (listen, admin) = (free_addr(), free_addr());
        let sidecar = Sidecar::start(&config(listen, admin, cp.addr), admin).await;

        // Until the control plane sends `web`, its placeholder answers 503.
        let before = client::get(listen, "/", &[]).await;
        assert_eq!(
            before.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            sidecar.logs()
        );

        let first = cp.request().await;
        assert_eq!(first.type_url, CLUSTER_TYPE);
        assert_eq!(
            first.node.as_ref().map(|n| n.id.as_str()),
            Some("sidecar-test")
        );
        cp.push(cds("1", &[eds_cluster("web")]));
        let sub = cp.request().await;
        assert_eq!(
            (sub.type_url.as_str(), sub.resource_names.as_slice()),
            (ENDPOINT_TYPE, &["web".to_owned()][..])
        );
        let ack = cp.request().await;
        assert_eq!(
            (
                ack.type_url.as_str(),
                ack.version_info.as_str(),
                ack.response_nonce.as_str()
            ),
            (CLUSTER_TYPE, "1", "cds-1"),
        );
        assert!(
            ack.error_detail.is_none(),
            "CDS ACK, not NACK: {:?}",
            ack.error_detail
        );

        let ack = cp
            .push_acked(eds("1", &[cla("web", &[upstream.addr])]))
            .await;
        assert_eq!(ack.response_nonce, "eds-1");
        assert!(
            reaches_upstream(listen).await,
            "no answer from web; logs:\n{}",
            sidecar.logs()
        );

        // SIGHUP re-reads the file, whose route names `web` without defining it: the
        // reload is refused and the running config, with the xDS cluster, stays.
        sidecar.signal("HUP");
        let logs = || sidecar.logs();
        assert!(
            eventually_async(Duration::from_secs(10), || async move {
                logs().contains("config reload refused (SIGHUP)")
            })
            .await,
            "no reload outcome logged:\n{}",
            sidecar.logs()
        );
        assert!(
            reaches_upstream(listen).await,
            "xDS cluster lost after SIGHUP:\n{}",
            sidecar.logs()
        );
    })
    .await;
}

#[tokio::test]
async fn validate_checks_the_xds_section() {
    with_timeout(LIMIT, async {
        let dir = TempDir::new("sidecar-xds-validate");
        let path = dir.join("config.yaml");
        let cp: SocketAddr = "127.0.0.1:18000".parse().expect("address");
        let good = config(free_addr(), free_addr(), cp);
        std::fs::write(&path, &good).expect("write config");
        let out = run_sidecar(
            &["--config".as_ref(), path.as_os_str(), "--validate".as_ref()],
            LIMIT,
        )
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "a route may name an xDS-only cluster: {stderr}"
        );

        std::fs::write(
            &path,
            good.replace("127.0.0.1:18000", "http://127.0.0.1:18000"),
        )
        .expect("write config");
        let out = run_sidecar(
            &["--config".as_ref(), path.as_os_str(), "--validate".as_ref()],
            LIMIT,
        )
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains("xds.servers[0]: "),
            "the error names the field: {stderr}"
        );

        std::fs::write(&path, good.replace("node: {", "nodes: {")).expect("write config");
        let out = run_sidecar(
            &["--config".as_ref(), path.as_os_str(), "--validate".as_ref()],
            LIMIT,
        )
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains("xds"),
            "the error names the section: {stderr}"
        );
    })
    .await;
}
