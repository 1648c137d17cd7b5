//! Finding and running PyPI's aioquic for the interop tests (installed by
//! `scripts/deps/proxy-quic.sh`), skipped loudly when it is missing.

// Test helpers: a failed setup should stop the test loudly.
#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use proxy_test_support::{python::Python, tools::ToolOutput as Output};

/// A Python that can import aioquic: the deps script's venv
/// (`PROXY_QUIC_AIOQUIC_VENV`), its `--target` directory, or the system one.
#[derive(Debug, Clone)]
pub struct Aioquic {
    python: Python,
}

impl Aioquic {
    /// The Python to use, or `None` after printing a loud SKIPPED line naming `what`.
    pub fn find(what: &str) -> Option<Self> {
        let Some(python) = Python::find(
            "aioquic.h3.connection",
            "PROXY_QUIC_AIOQUIC_VENV",
            "aioquic-venv",
        ) else {
            eprintln!("SKIPPED: {what} did not run (aioquic: scripts/deps/proxy-quic.sh)");
            return None;
        };
        Some(Self { python })
    }

    /// Runs `tests/aioquic/SCRIPT` with `args`, at most `limit`, off the runtime.
    pub async fn run(&self, script: &str, args: Vec<String>, limit: Duration) -> Output {
        let mut cmd = self.python.command();
        cmd.arg(quic_dir().join("tests/aioquic").join(script))
            .args(args);
        tokio::task::spawn_blocking(move || {
            proxy_test_support::tools::run_blocking(cmd, b"", limit)
        })
        .await
        .unwrap()
    }
}

/// proxy-quic's directory, found from the crate that includes this module
/// (proxy-quic itself, or an example such as the sidecar, by `#[path]`).
pub fn quic_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|dir| dir.join("proxy-quic"))
        .find(|dir| dir.join("tests/aioquic").is_dir())
        .unwrap_or_else(|| manifest.to_path_buf())
}

/// The JSON objects a script printed, one a line.
pub fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    out.stdout_text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
