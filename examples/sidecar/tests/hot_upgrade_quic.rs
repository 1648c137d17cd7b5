//! Hot upgrade of a sidecar with a `quic` section: while PyPI's aioquic (a client
//! nobody here wrote) makes HTTP/3 requests one after another and an HTTP/1.1
//! client does the same on one keep-alive connection, a second process takes over
//! with `--upgrade`: it starts its HTTP/3 listener on the UDP socket the first
//! handed over (it binds nothing) and forwards the first the datagrams of its
//! connection; the first sends GOAWAY, drains and exits 0. Then a third takes over
//! from the second the same way (the generation of connection IDs alternates). No
//! request fails; the HTTP/3 client moves to a new connection after each GOAWAY,
//! and the HTTP/1.1 connection goes over as before. Skipped loudly without aioquic
//! (`scripts/deps/proxy-quic.sh`).

use crate::common;

use crate::aioquic_support;
use crate::support;

use std::time::{Duration, Instant};

use aioquic_support::{json_lines, Aioquic};
use common::*;
use http::StatusCode;
use proxy_test_support::{
    hot_upgrade::RequestStream, pki::Pki, temp::TempDir, with_timeout, Upstream,
};
use support::*;

const LIMIT: Duration = Duration::from_secs(120);

/// How many HTTP/3 answers the client has counted in `progress`.
fn answered(progress: &std::path::Path) -> u64 {
    std::fs::read_to_string(progress)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until the HTTP/3 client has `n` answers, or fails with `logs`.
async fn wait_answered(progress: &std::path::Path, n: u64, logs: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while answered(progress) < n {
        assert!(
            Instant::now() < deadline,
            "{} HTTP/3 answers, waiting for {n}\n{}",
            answered(progress),
            logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts `name` with `--upgrade`, waits for `old` to exit 0, and checks that the new
/// process took the UDP socket over, that the old one's connection went on after the
/// switch (the new one forwarded it the client's datagrams), and that requests go on
/// once the old one is gone.
async fn upgrade(
    name: &'static str,
    mut old: ProxyProcess,
    dir: &TempDir,
    config: &std::path::Path,
    progress: &std::path::Path,
) -> ProxyProcess {
    let mut new = start_sidecar(name, dir, config, &["--upgrade"]);
    let status = old.wait_exit(Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "{} exit {status}\n{}",
        old.name,
        old.logs()
    );
    assert!(new.running(), "{name} exited\n{}", new.logs());
    let (old_logs, new_logs) = (old.logs(), new.logs());
    assert!(
        new_logs.contains("QUIC sockets taken over sockets=1") && new_logs.contains("took over"),
        "{name} did not take the UDP socket over\n{new_logs}"
    );
    assert!(
        old_logs.contains("handed the UDP sockets over")
            && old_logs.contains("QUIC listener handed off"),
        "{old_logs}"
    );
    let forwarded = proxy_test_support::hot_upgrade::log_field(
        &old_logs,
        "QUIC listener drained after the hand-off",
        "received_forwarded",
    )
    .and_then(|n| n.parse::<u64>().ok());
    assert!(forwarded > Some(0), "{old_logs}");
    let after_exit = answered(progress);
    wait_answered(progress, after_exit + 30, || new.logs()).await;
    new
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h3_client_keeps_its_requests_going_through_a_hot_upgrade() {
    let Some(aioquic) = Aioquic::find("sidecar QUIC hot upgrade test") else {
        return;
    };
    let _heavy = heavy_test_lock().await;
    with_timeout(LIMIT, async {
        let up = Upstream::named("up");
        let pki = Pki::new("sidecar-h3-upgrade");
        let dir = TempDir::new("hot-upgrade-quic");
        let (cfg, config, port) = h3_upgrade_config(&dir, up.addr, &pki, "5s", "5s");
        let mut first = start_sidecar("first", &dir, &config, &[]);
        first.wait_ready(cfg.admin).await;

        let h1 = RequestStream::start(
            cfg.listen,
            "/",
            &[],
            StatusCode::OK,
            Duration::from_millis(5),
        );
        let (progress, stop) = (dir.join("progress"), dir.join("stop"));
        let args = vec![
            "--port".to_string(),
            port.to_string(),
            "--ca".into(),
            pki.ca_pem.display().to_string(),
            "--progress".into(),
            progress.display().to_string(),
            "--stop".into(),
            stop.display().to_string(),
            "--pause-ms".into(),
            "10".into(),
        ];
        let client = tokio::spawn({
            let aioquic = aioquic.clone();
            async move {
                aioquic
                    .run("h3_upgrade_client.py", args, Duration::from_secs(100))
                    .await
            }
        });
        wait_answered(&progress, 20, || first.logs()).await;

        // Two upgrades, with HTTP/3 requests going: the generations alternate.
        let second = upgrade("second", first, &dir, &config, &progress).await;
        let third = upgrade("third", second, &dir, &config, &progress).await;

        std::fs::write(&stop, b"stop").expect("write stop");
        let out = client.await.expect("client task");
        assert!(
            out.ok(),
            "aioquic client failed: {}\n{}",
            out.text(),
            third.logs()
        );
        let report = json_lines(&out).pop().expect("the client's report");
        eprintln!("HTTP/3 through a hot upgrade: {report}");
        assert_eq!(report["failed"], serde_json::json!([]), "{report}");
        let connections = report["connections"].as_array().expect("connections");
        assert!(connections.len() >= 3, "{report}");
        for told in &connections[..2] {
            assert_eq!(told["goaway"], true, "told to go away: {report}");
        }
        let last = connections.last().expect("a connection");
        assert!(last["requests"].as_u64() >= Some(30), "{report}");

        // HTTP/1.1 upgraded as before: its one connection went over.
        let h1 = h1.stop().await;
        assert!(h1.failures.is_empty(), "{:?}", h1.failures);
        assert!(h1.ok > 0);
        assert_eq!(h1.connects, 1, "the keep-alive connection went over");
    })
    .await;
}
