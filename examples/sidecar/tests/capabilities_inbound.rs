//! The capability crates assembled in the sidecar binary, used as someone copying the
//! example would (the binary on `configs/mesh.yaml`, only its addresses replaced by
//! free loopback ports): the file validates as committed, and the inbound listener
//! serves proxy-tls termination with mTLS (curl with and without a client
//! certificate, a Tongsuo Guomi client when installed) and proxy-filters' rbac,
//! local_rate_limit and access_log.

#![allow(clippy::unwrap_used)]

use crate::mesh;

use mesh::*;

/// `sidecar --validate --config .../mesh.yaml` succeeds from examples/sidecar/ and
/// from the workspace root alike (the certificate paths resolve from the config
/// file's directory): every capability name resolves and the certificates load. A
/// missing key file is refused naming the field and the file.
#[tokio::test]
async fn mesh_config_validates_as_committed() {
    with_timeout(LIMIT, async {
        let root = sidecar_dir().join("../..");
        for (dir, config) in [
            (sidecar_dir().to_path_buf(), "configs/mesh.yaml"),
            (root, "examples/sidecar/configs/mesh.yaml"),
        ] {
            let out = tokio::process::Command::new(SIDECAR)
                .args(["--validate", "--config", config])
                .current_dir(&dir)
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output();
            let out = tokio::time::timeout(TOOL_LIMIT, out)
                .await
                .unwrap()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "sidecar --validate --config {config} from {} failed: {stderr}",
                dir.display()
            );
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "config ok");
        }

        let dir = TempDir::new("mesh-broken");
        let broken = dir.join("mesh.yaml");
        let yaml = absolute_certs(&std::fs::read_to_string(mesh_path()).unwrap()).replacen(
            "certs/reviews.key",
            "certs/missing.key",
            1,
        );
        std::fs::write(&broken, yaml).unwrap();
        let out = run_sidecar(
            &[
                "--validate".as_ref(),
                "--config".as_ref(),
                broken.as_os_str(),
            ],
            TOOL_LIMIT,
        )
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "a missing key file passed validation"
        );
        assert!(
            stderr.contains(
                "listeners[0].network_filters[1].config.certificates[0].key: cannot read "
            ) && stderr.contains("missing.key"),
            "the error should name the field and the file: {stderr}"
        );
    })
    .await;
}

// === (2) smoke requests through the running binary ===

/// proxy-tls termination with mTLS, proxy-filters rbac, per-route local_rate_limit
/// and access_log on the inbound listener.
#[tokio::test]
async fn inbound_mtls_rbac_rate_limit_and_access_log() {
    with_timeout(LIMIT, async {
        if !tools::installed("curl") {
            return;
        }
        let mesh = Mesh::start(None).await;

        // A mesh workload with a certificate from the mesh root gets through to the app.
        let r = mesh
            .inbound_get(
                Some("productpage"),
                "/reviews/1",
                &["-H", "x-request-id: smoke-1"],
            )
            .await;
        assert_eq!(
            r.status,
            200,
            "{} {}\n{}",
            r.stderr,
            r.text(),
            mesh.sidecar.logs()
        );
        assert!(
            r.protocol.starts_with("HTTP/2"),
            "ALPN h2 expected, got {}",
            r.protocol
        );
        let echoed = Echoed::parse(&r.body);
        assert_eq!(echoed.upstream, "app");
        assert_eq!(echoed.uri, "/reviews/1");
        assert_eq!(echoed.header("x-forwarded-proto"), Some("https"));

        // No client certificate: the TLS 1.3 handshake ends with an alert, no response.
        let r = mesh.inbound_get(None, "/reviews/1", &[]).await;
        assert_ne!(
            r.exit_code, 0,
            "a client without a certificate got through: {r:?}"
        );
        assert_eq!(
            r.status, 0,
            "no HTTP response expected without a client certificate"
        );

        // rbac: /admin is denied to everyone, other namespaces are denied everything.
        let r = mesh
            .inbound_get(Some("productpage"), "/admin/settings", &[])
            .await;
        assert_eq!(r.status, 403, "{}", r.text());
        assert_eq!(r.header("x-proxy-error"), Some("rbac_denied"));
        let r = mesh.inbound_get(Some("stranger"), "/reviews/1", &[]).await;
        assert_eq!(r.status, 403, "ns/legacy must be denied: {}", r.text());

        // local_rate_limit on the export route: 2 requests, then 429 with retry-after.
        // Three requests on one connection (one curl run, one handshake).
        let mut args = mesh.https_args(Some("productpage"));
        args.extend([
            "-sS".to_owned(),
            "--http1.1".to_owned(),
            "-D".to_owned(),
            "-".to_owned(),
        ]);
        for _ in 0..3 {
            args.extend(["-o".to_owned(), "/dev/null".to_owned()]);
            args.push(mesh.inbound_url("/reviews/export"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = tools::curl(&args, TOOL_LIMIT)
            .await
            .expect("curl is installed");
        let heads = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
        let statuses: Vec<&str> = heads
            .lines()
            .filter(|l| l.starts_with("http/"))
            .filter_map(|l| l.split_whitespace().nth(1))
            .collect();
        assert_eq!(statuses, ["200", "200", "429"], "{heads}");
        assert!(heads.contains("retry-after:"), "{heads}");
        assert!(heads.contains("x-proxy-error: rate_limited"), "{heads}");

        // Each crate's counters are on the admin endpoint.
        let metrics = mesh.sidecar.metrics().await;
        for (needles, at_least) in [
            (&["proxy_tls_handshakes_total"][..], 4.0),
            (
                &["proxy_tls_handshake_failures_total", "client_certificate"],
                1.0,
            ),
            (&["proxy_filters_rbac_decisions_total", "denied"], 2.0),
            (
                &[
                    "proxy_filters_local_rate_limit_decisions_total",
                    "export",
                    "limited",
                ],
                1.0,
            ),
            (&["proxy_filters_connection_limit_accepted_total"], 5.0),
        ] {
            let sum = metric_sum(&metrics, needles);
            assert!(
                sum >= at_least,
                "{needles:?} = {sum}, want >= {at_least}\n{metrics}"
            );
        }

        // access_log: one JSON line per request on the sidecar's stdout, local replies
        // of the filters after it included (it is the outermost filter).
        let lines = |logs: String| -> Vec<serde_json::Value> {
            logs.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        };
        assert!(
            eventually(Duration::from_secs(5), || lines(mesh.sidecar.logs()).len()
                >= 6)
            .await,
            "not within 5s: access log lines on stdout"
        );
        let logged = lines(mesh.sidecar.logs());
        let first = logged
            .iter()
            .find(|v| v["request_id"] == "smoke-1")
            .unwrap_or_else(|| panic!("no line of request smoke-1: {logged:?}"));
        assert_eq!(first["status"], 200, "{first}");
        assert_eq!(first["path"], "/reviews/1", "{first}");
        assert_eq!(first["protocol"], "HTTP/2.0", "{first}");
        let errors: Vec<&str> = logged
            .iter()
            .filter_map(|v| v["proxy_error"].as_str())
            .collect();
        assert_eq!(
            errors,
            ["rbac_denied", "rbac_denied", "rate_limited"],
            "{logged:?}"
        );
    })
    .await;
}

/// proxy-tls Guomi (RFC 8998) on the same inbound listener: a Tongsuo client offering
/// only TLS_SM4_GCM_SM3 gets the SM2 certificate, presents its own SM2 client
/// certificate (productpage's SPIFFE id, which rbac allows) and reaches the app.
#[tokio::test]
async fn inbound_guomi_client_with_an_sm2_certificate() {
    with_timeout(LIMIT, async {
        let Some(python) = tongsuo_python() else {
            return;
        };
        let mesh = Mesh::start(None).await;
        let mut cmd = python.tokio_command();
        let port = mesh.inbound.port().to_string();
        let (ca, crt, key) = (
            cert("sm2-ca.pem"),
            cert("sm2-productpage.pem"),
            cert("sm2-productpage.key"),
        );
        cmd.arg(sidecar_dir().join("../../proxy-tls/tests/interop/tongsuo_peer.py"))
            .args([
                "client", "--port", &port, "--ca", &ca, "--cert", &crt, "--key", &key,
            ])
            .args(["--http-get", "/reviews/guomi"])
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(TOOL_LIMIT, cmd.output())
            .await
            .expect("tongsuo_peer.py did not finish")
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            mesh.sidecar.logs()
        );
        assert!(stdout.contains("CIPHER TLS_SM4_GCM_SM3"), "{stdout}");
        assert!(stdout.contains("PEER_SIGNATURE_TYPE SM2"), "{stdout}");
        assert!(stdout.contains("HTTP_STATUS HTTP/1.1 200"), "{stdout}");
        assert!(stdout.contains(r#""upstream":"app""#), "{stdout}");
        assert!(stdout.contains("/reviews/guomi"), "{stdout}");
    })
    .await;
}
