//! HTTP/3 from the `quic` section: the sidecar binary with a TCP listener `web` and
//! an HTTP/3 listener serving it; PyPI's aioquic (a client nobody here wrote) makes
//! HTTP/3 requests answered by the upstream the routes pick; a SIGHUP reload that
//! changes the route is followed on the same QUIC connection; the TCP listener
//! advertises the HTTP/3 one (`alt-svc`); its counters are on the admin metrics.
//! Skipped loudly without aioquic (`scripts/deps/proxy-quic.sh`).

use crate::common;

use crate::aioquic_support;

use std::time::{Duration, Instant};

use aioquic_support::{json_lines, Aioquic};
use common::*;
use proxy_test_support::{client, pki::Pki, temp::TempDir, with_timeout, Upstream};

const LIMIT: Duration = Duration::from_secs(90);

/// A UDP port free now (bound, then released).
fn free_udp_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
    socket.local_addr().expect("local address").port()
}

/// The TCP listener `web` routing `/` to `cluster`, an HTTP/3 listener serving it on
/// UDP `port`, advertised by `web`.
fn yaml(base: &ConfigBuilder, cluster: &str, port: u16, issued: &Issued) -> String {
    let mut cfg = base.clone();
    cfg.vhosts.clear();
    cfg.top_extra = format!(
        "quic:\n  h3:\n    - serves: web\n      address: \"127.0.0.1:{port}\"\n      \
         certificate: {{cert: \"{}\", key: \"{}\"}}\n      idle_timeout: 60s\n      \
         alt_svc: {{max_age: 1h}}\n",
        issued.cert.display(),
        issued.key.display()
    );
    cfg.routes(vec![route("switch", "/", cluster, "")])
        .yaml()
        .replace("  - name: main\n", "  - name: web\n")
}

type Issued = proxy_test_support::pki::Issued;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_requests_follow_routes_and_a_sighup_reload_on_one_connection() {
    let Some(aioquic) = Aioquic::find("sidecar HTTP/3 listener test") else {
        return;
    };
    let _heavy = heavy_test_lock().await;
    with_timeout(LIMIT, async {
        let (alpha, beta) = (Upstream::named("alpha"), Upstream::named("beta"));
        let pki = Pki::new("sidecar-h3");
        let issued = pki.server("server", &["localhost"]);
        let port = free_udp_port();
        let mut base = ConfigBuilder::new()
            .cluster(cluster("alpha", alpha.addr, ""))
            .cluster(cluster("beta", beta.addr, ""));
        base.vhosts.clear();
        let sidecar = Sidecar::start(&yaml(&base, "alpha", port, &issued), base.admin).await;

        // The TCP listener advertises HTTP/3 on the configured port.
        let r = client::get(base.listen, "/", &[]).await;
        assert_eq!(r.text(), "alpha");
        assert_eq!(
            r.header("alt-svc"),
            Some(format!("h3=\":{port}\"; ma=3600").as_str()),
            "{}",
            sidecar.logs()
        );

        let dir = TempDir::new("h3-reload");
        let (first, go) = (dir.join("first.json"), dir.join("go"));
        let args = vec![
            "--port".to_string(),
            port.to_string(),
            "--ca".into(),
            pki.ca_pem.display().to_string(),
            "--first".into(),
            first.display().to_string(),
            "--go".into(),
            go.display().to_string(),
        ];
        let run = tokio::spawn({
            let aioquic = aioquic.clone();
            async move {
                aioquic
                    .run("h3_reload_client.py", args, Duration::from_secs(60))
                    .await
            }
        });

        // The first answer, over HTTP/3, from the route's upstream.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !first.exists() {
            assert!(
                Instant::now() < deadline && !run.is_finished(),
                "no first HTTP/3 answer\n{}",
                sidecar.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let before: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&first).expect("read")).expect("json");
        assert_eq!(before["status"], 200, "{before}");
        assert_eq!(before["body"], "alpha", "{before}");

        // Reload with the route switched to beta (SIGHUP), seen on TCP first.
        sidecar.write_config(&yaml(&base, "beta", port, &issued));
        sidecar.signal("HUP");
        let deadline = Instant::now() + Duration::from_secs(20);
        while client::get(base.listen, "/", &[]).await.text() != "beta" {
            assert!(
                Instant::now() < deadline,
                "reload not applied\n{}",
                sidecar.logs()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        std::fs::write(&go, b"go").expect("write go");

        let out = run.await.expect("client task");
        assert!(
            out.ok(),
            "aioquic client failed: {}\n{}",
            out.text(),
            sidecar.logs()
        );
        let answers = json_lines(&out);
        assert_eq!(answers.len(), 2, "{answers:?}");
        let after = &answers[1];
        assert_eq!(after["status"], 200, "{after}");
        assert_eq!(after["body"], "beta", "the reload is followed: {after}");
        assert_eq!(after["connection"], before["connection"], "one connection");
        assert_eq!(after["state"], "CONNECTED", "{after}");
        assert!(
            beta.hits() >= 2,
            "beta got the HTTP/3 request and the TCP probe"
        );

        // The HTTP/3 listener's counters on the admin endpoint.
        let metrics = sidecar.admin_get("/stats/prometheus").await.text();
        let requests = metrics
            .lines()
            .find(|l| l.starts_with("proxy_quic_h3_requests_total{listener=\"web-h3\"}"))
            .unwrap_or_else(|| panic!("no HTTP/3 requests counter in\n{metrics}"));
        assert!(requests.ends_with(" 2"), "{requests}");
    })
    .await;
}

#[tokio::test]
async fn validate_names_the_bad_quic_field() {
    let base = ConfigBuilder::new().routes(vec![route("r", "/", "app", "")]);
    let base = base.cluster(cluster("app", "127.0.0.1:1".parse().expect("addr"), ""));
    let dir = TempDir::new("h3-validate");
    let path = dir.join("config.yaml");
    let mut cfg = base.clone();
    cfg.top_extra = "quic:\n  h3:\n    - serves: nope\n      address: \"127.0.0.1:4433\"\n      \
                     certificate: {cert: server.pem, key: server.key}\n"
        .into();
    std::fs::write(&path, cfg.yaml()).expect("write");
    let out = std::process::Command::new(SIDECAR)
        .args(["--validate", "--config"])
        .arg(&path)
        .output()
        .expect("run sidecar");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("quic.h3[0].serves"), "{stderr}");

    cfg.top_extra = cfg.top_extra.replace("serves: nope", "serves: main");
    cfg.top_extra.push_str("      max_concurrent_streams: 0\n");
    std::fs::write(&path, cfg.yaml()).expect("write");
    let out = std::process::Command::new(SIDECAR)
        .args(["--validate", "--config"])
        .arg(&path)
        .output()
        .expect("run sidecar");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("quic.h3[0].max_concurrent_streams"),
        "{stderr}"
    );
}
