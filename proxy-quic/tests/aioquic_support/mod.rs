//! Finding and running PyPI's aioquic for the interop tests (installed by
//! `scripts/deps/proxy-quic.sh`), skipped loudly when it is missing.

// Test helpers: a failed setup should stop the test loudly.
#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use proxy_test_support::tools::ToolOutput as Output;

/// A Python that can import aioquic: the deps script's venv, its `--target`
/// directory, or the system one.
#[derive(Debug, Clone)]
pub struct Aioquic {
    python: PathBuf,
    pythonpath: Option<PathBuf>,
}

impl Aioquic {
    /// The Python to use, or `None` after printing a loud SKIPPED line naming `what`.
    pub fn find(what: &str) -> Option<Self> {
        let root = quic_dir().join("..");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let dest = std::env::var_os("PROXY_QUIC_AIOQUIC_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| target.join("test-deps/aioquic-venv"));
        let candidates = [
            (dest.join("bin/python3"), None),
            (PathBuf::from("python3"), Some(dest.join("site"))),
            (PathBuf::from("python3"), None),
        ];
        for (python, pythonpath) in candidates {
            let mut cmd = Command::new(&python);
            cmd.args(["-c", "import aioquic.h3.connection"]);
            if let Some(p) = &pythonpath {
                cmd.env("PYTHONPATH", p);
            }
            if cmd.output().is_ok_and(|o| o.status.success()) {
                return Some(Self { python, pythonpath });
            }
        }
        eprintln!(
            "\n==============================================\n\
             SKIPPED: aioquic not installed (run scripts/deps/proxy-quic.sh); \
             {what} did not run\n\
             ==============================================\n"
        );
        None
    }

    /// Runs `tests/aioquic/SCRIPT` with `args`, at most `limit`, off the runtime.
    pub async fn run(&self, script: &str, args: Vec<String>, limit: Duration) -> Output {
        let mut cmd = Command::new(&self.python);
        if let Some(p) = &self.pythonpath {
            cmd.env("PYTHONPATH", p);
        }
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
