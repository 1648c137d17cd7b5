//! HTTP/3 interop with a client nobody here wrote: PyPI's `aioquic` (its own QUIC,
//! TLS 1.3 and QPACK) makes requests through an `H3Listener` whose stack is
//! proxy-core's router and proxy to an HTTP/1.1 upstream: a GET, a POST with a
//! body, ten concurrent GETs, a GET after the client moved to a new connection
//! ID and a new UDP port, and two refused requests (a head over the limit, a head
//! without `:path`) after which the connection still serves. Installed by `scripts/deps/proxy-quic.sh`; skipped loudly
//! without it.

// Test code: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used)]

use crate::h3_support;

use std::{path::Path, time::Duration};

use h3_support::{proxy_stack, Running, TEST_TIMEOUT};
use proxy_core::{BoxHttp, ConnInfo, HttpRequest};
use proxy_quic::h3::{server_config, H3Listener};
use proxy_test_support::{pki::Pki, python::Python, upstream::Echoed, with_timeout, Upstream};
use tower::ServiceExt;

/// A Python that can import aioquic: the deps script's venv
/// (`PROXY_QUIC_AIOQUIC_VENV`), its `--target` directory, or the system one;
/// `None` (and a loud line) if none.
fn aioquic_python() -> Option<Python> {
    Python::find(
        "aioquic.h3.connection",
        "PROXY_QUIC_AIOQUIC_VENV",
        "aioquic-venv",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aioquic_http3_client_through_the_listener_to_an_http1_upstream() {
    let Some(python) = aioquic_python() else {
        return;
    };
    with_timeout(TEST_TIMEOUT, async move {
        let up = Upstream::echo("e");
        let pki = Pki::new("h3-aioquic");
        let issued = pki.server("server", &["localhost"]);
        let tls = server_config(issued.cert_pem.as_bytes(), issued.key_pem.as_bytes()).unwrap();
        // The stack tells the upstream the client's port it saw (from `ConnInfo`).
        let stack = BoxHttp::new(proxy_stack(up.addr).map_request(|mut req: HttpRequest| {
            let port = req
                .extensions()
                .get::<ConnInfo>()
                .and_then(|c| c.peer)
                .map(|p| p.port());
            if let Some(port) = port {
                req.headers_mut().insert("x-peer-port", port.into());
            }
            req
        }));
        let server = Running::start(H3Listener::builder("h3", tls), stack);

        let mut cmd = python.command();
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aioquic/h3_client.py"))
            .args([
                "--port",
                &server.addr.port().to_string(),
                "--host",
                "localhost",
            ])
            .arg("--ca")
            .arg(&pki.ca_pem);
        let out = tokio::task::spawn_blocking(move || {
            proxy_test_support::tools::run_blocking(cmd, b"", Duration::from_secs(20))
        })
        .await
        .unwrap();
        assert!(out.ok(), "aioquic client failed:\n{}", out.text());

        let answers: Vec<serde_json::Value> = out
            .stdout_text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(answers.len(), 16, "{}", out.text());
        let named = |name: &str| answers.iter().find(|a| a["name"] == name).unwrap().clone();
        // Over the head limit: 431 from h3; without :path: the stream reset with
        // H3_MESSAGE_ERROR (0x10e). Neither reaches the upstream.
        assert_eq!(named("too-big")["status"], 431, "{}", named("too-big"));
        assert_eq!(named("no-path")["reset"], 0x10e, "{}", named("no-path"));
        for a in answers
            .iter()
            .filter(|a| !matches!(a["name"].as_str(), Some("too-big" | "no-path")))
        {
            let name = a["name"].as_str().unwrap();
            assert_eq!(a["status"], 200, "{name}: {a}");
            assert_eq!(a["headers"]["x-upstream"], "e", "{name}: {a}");
            let e = Echoed::parse(a["body"].as_str().unwrap().as_bytes());
            let path = match name {
                "get" | "post" | "migrated" | "after" => format!("/aio/{name}"),
                many => format!("/aio/many/{}", many.trim_start_matches("many-")),
            };
            assert_eq!(e.uri, path);
            assert_eq!(e.header("user-agent"), Some("aioquic-interop"));
            assert_eq!(e.header("x-forwarded-proto"), Some("https"));
            // The address the stack saw is the client's, after the migration too.
            let port = a["local_port"].as_u64().unwrap().to_string();
            assert_eq!(e.header("x-peer-port"), Some(port.as_str()), "{name}");
            if name == "post" {
                assert_eq!(
                    (e.method.as_str(), e.body.as_str()),
                    ("POST", "posted by aioquic")
                );
            }
        }
        assert_ne!(
            named("get")["local_port"],
            named("migrated")["local_port"],
            "the client did not move"
        );
        assert_eq!(up.hits(), 14);
        assert_eq!(server.stats().malformed, 2);
        server.stop().await.unwrap();
    })
    .await;
}
