//! The xDS control plane of the sidecar's xDS tests: `xds/control_plane.py`
//! (proxy-xds's Python ADS server; grpcio and xds-protos from the deps script's venv)
//! and the committed bootstrap files it is used with.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
};

use proxy_test_support::python::Python;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Child,
};

pub(crate) fn sidecar_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A Python with grpcio and xds-protos (the deps script's venv, `PROXY_XDS_VENV`),
/// or `None` (loudly).
pub(crate) fn python() -> Option<Python> {
    Python::find(
        "grpc, envoy.service.discovery.v3.ads_pb2_grpc",
        "PROXY_XDS_VENV",
        "xds-venv",
    )
}

/// `control_plane.py --port 0 --snapshot FILE --upstream ADDR`, and the port its
/// ADS server listens on.
pub(crate) async fn control_plane(
    python: &Python,
    snapshot: &Path,
    upstream: SocketAddr,
) -> (Child, u16) {
    let mut child = python
        .tokio_command()
        .arg(sidecar_dir().join("xds/control_plane.py"))
        .args(["--port", "0", "--snapshot"])
        .arg(snapshot)
        .args(["--upstream", &upstream.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start control_plane.py");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await.expect("read control plane") {
        let event: serde_json::Value = serde_json::from_str(&line).expect("json event");
        if event["event"] == "listening" {
            let port = event["port"].as_u64().expect("port");
            // Keep reading so that the control plane never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return (child, u16::try_from(port).expect("port"));
        }
    }
    panic!("control_plane.py ended before listening");
}

/// The committed file at `path` (relative to the sidecar's directory), its
/// addresses replaced.
pub(crate) fn committed(path: &str, replace: &[(&str, String)]) -> String {
    let mut text = std::fs::read_to_string(sidecar_dir().join(path)).expect(path);
    for (from, to) in replace {
        assert!(text.contains(from), "{path} has no {from}");
        text = text.replace(from, to);
    }
    text
}
