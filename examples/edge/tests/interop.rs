//! The edge binary on its embedded default, reached by clients of other stacks:
//! HTTP/3 from aioquic (proxy-quic's `h3_client.py`, found by proxy-quic's
//! `aioquic_support`) and Guomi TLS (TLS_SM4_GCM_SM3, SM2 certificate) from Tongsuo
//! (proxy-tls's `tongsuo_peer.py`). Each skips loudly when its Python package is not
//! installed (`scripts/deps/proxy-quic.sh`, `scripts/deps/proxy-tls-guomi.sh`).

use crate::aioquic_support;
use crate::common;

use std::{path::Path, process::Command, time::Duration};

use common::{Edge, LIMIT};
use proxy_test_support::{python::Python, tools, with_timeout};

/// HTTP/3 on the TLS port's UDP twin: the same routes, filters and zones.
#[tokio::test]
async fn h3_from_aioquic_reaches_a_zone() {
    with_timeout(LIMIT, async {
        let Some(aioquic) = aioquic_support::Aioquic::find("the edge HTTP/3 test") else {
            return;
        };
        let edge = Edge::default_run();
        let args = vec![
            "--port".to_string(),
            edge.listen.port().to_string(),
            "--host".into(),
            "localhost".into(),
            "--ca".into(),
            edge.cert("edge-ca.pem").display().to_string(),
        ];
        let out = aioquic
            .run("h3_client.py", args, Duration::from_secs(15))
            .await;
        assert!(out.ok(), "h3_client.py failed: {}", out.text());
        let answers = aioquic_support::json_lines(&out);
        let get = answers
            .iter()
            .find(|a| a["name"] == "get")
            .unwrap_or_else(|| panic!("no get answer: {answers:?}"));
        assert_eq!(get["status"], 200, "{get}");
        let body = get["body"].as_str().unwrap_or_default();
        assert!(body.starts_with("hello from zone z"), "{body}");
    })
    .await;
}

/// A Tongsuo client offering only TLS_SM4_GCM_SM3 gets the SM2 certificate (verified
/// against the throwaway SM2 root) and reaches a demo backend.
#[tokio::test]
async fn guomi_tls_from_tongsuo_reaches_a_zone() {
    with_timeout(LIMIT, async {
        let Some(mut cmd) = tongsuo_client() else {
            return;
        };
        let edge = Edge::default_run();
        cmd.args([
            "client".to_string(),
            "--port".into(),
            edge.listen.port().to_string(),
            "--ca".into(),
            edge.cert("edge-sm2-ca.pem").display().to_string(),
            "--http-get".into(),
            "/guomi".into(),
        ]);
        let out = tokio::task::spawn_blocking(move || {
            tools::run_blocking(cmd, b"", Duration::from_secs(15))
        })
        .await
        .unwrap();
        let text = out.text();
        assert!(out.ok(), "tongsuo client failed: {text}");
        assert!(text.contains("CIPHER TLS_SM4_GCM_SM3"), "{text}");
        assert!(text.contains("PEER_SIGNATURE_TYPE SM2"), "{text}");
        assert!(text.contains("HTTP_STATUS HTTP/1.1 200"), "{text}");
        assert!(text.contains("zone z"), "{text}");
    })
    .await;
}

/// proxy-tls's Tongsuo peer script under a Python that imports `tongsuopy` (the deps
/// script's venv, its `--target` directory, or the system one), as proxy-tls's
/// interop tests find it; `None` after a loud line.
fn tongsuo_client() -> Option<Command> {
    let python = Python::find("tongsuopy", "PROXY_TLS_GUOMI_VENV", "tongsuo-venv")?;
    let mut cmd = python.command();
    cmd.arg(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proxy-tls/tests/interop/tongsuo_peer.py"),
    );
    Some(cmd)
}
