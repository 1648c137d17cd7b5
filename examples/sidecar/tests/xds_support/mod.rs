//! The xDS control plane of the sidecar's xDS tests: `xds/control_plane.py`
//! (proxy-xds's Python ADS server; grpcio and xds-protos from the deps script's venv)
//! and the committed bootstrap files it is used with.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use proxy_test_support::python::Python;
use tokio::process::Child;

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
    let upstream = upstream.to_string();
    python
        .start_listening(
            &sidecar_dir().join("xds/control_plane.py"),
            [
                "--port".as_ref(),
                "0".as_ref(),
                "--snapshot".as_ref(),
                snapshot.as_os_str(),
                "--upstream".as_ref(),
                std::ffi::OsStr::new(&upstream),
            ],
        )
        .await
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
