//! Test-only dependencies installed by the deps scripts under
//! `${CARGO_TARGET_DIR:-<workspace>/target}/test-deps/`: [`test_deps_dir`], and a
//! Python that can import a client's module ([`Python::find`]), skipped loudly
//! when there is none.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

/// The directory the deps scripts install into: `$CARGO_TARGET_DIR/test-deps`
/// (a relative `CARGO_TARGET_DIR` is taken from the workspace root), else
/// `<workspace>/target/test-deps`.
///
/// ```no_run
/// let peers = proxy_test_support::python::test_deps_dir().join("proxy-codec");
/// ```
pub fn test_deps_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|t| !t.is_empty())
        .map(|t| workspace.join(t))
        .unwrap_or_else(|| workspace.join("target"));
    target.join("test-deps")
}

/// A Python interpreter that can import a test client's module, with the
/// `PYTHONPATH` it needs for that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Python {
    /// The interpreter: a venv's `bin/python3`, or `python3` on `PATH`.
    pub exe: PathBuf,
    /// The `PYTHONPATH` it runs with (a `--target` install's `site` directory), if any.
    pub pythonpath: Option<PathBuf>,
}

impl Python {
    /// A Python that can `import probe_import`, tried in this order: the deps
    /// script's venv (`$venv_env_var`, else `<test-deps>/<venv_dir_name>`, see
    /// [`test_deps_dir`]) and its `bin/python3`; `python3` with `PYTHONPATH` set
    /// to the venv's `site` directory; the system `python3`. `None`, after a loud
    /// `SKIPPED:` banner on stderr, when none can: the caller returns early.
    ///
    /// ```no_run
    /// use proxy_test_support::python::Python;
    ///
    /// let Some(python) = Python::find("aioquic", "PROXY_QUIC_AIOQUIC_VENV", "aioquic-venv") else {
    ///     return; // SKIPPED
    /// };
    /// let out = python.command().args(["-c", "import aioquic"]).output().unwrap();
    /// assert!(out.status.success());
    /// ```
    pub fn find(probe_import: &str, venv_env_var: &str, venv_dir_name: &str) -> Option<Python> {
        let venv = std::env::var_os(venv_env_var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| test_deps_dir().join(venv_dir_name));
        let candidates = [
            Python {
                exe: venv.join("bin/python3"),
                pythonpath: None,
            },
            Python {
                exe: PathBuf::from("python3"),
                pythonpath: Some(venv.join("site")),
            },
            Python {
                exe: PathBuf::from("python3"),
                pythonpath: None,
            },
        ];
        let found = candidates.into_iter().find(|python| {
            python
                .command()
                .args(["-c", &format!("import {probe_import}")])
                .stdin(std::process::Stdio::null())
                .output()
                .is_ok_and(|o| o.status.success())
        });
        if found.is_none() {
            // Written to the stream directly, as in `tools::installed`, so that
            // libtest's output capture does not hide it.
            let banner = format!(
                "\n==============================================\n\
                 SKIPPED: python module {probe_import} not installed (run \
                 scripts/install-test-deps.sh, or set {venv_env_var} to its venv; \
                 looked in {})\n\
                 ==============================================\n",
                venv.display()
            );
            let _ = std::io::stderr().write_all(banner.as_bytes());
        }
        found
    }

    /// A command running this interpreter, with its `PYTHONPATH`.
    pub fn command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.exe);
        if let Some(path) = &self.pythonpath {
            cmd.env("PYTHONPATH", path);
        }
        cmd
    }

    /// [`command`](Self::command) for tokio.
    pub fn tokio_command(&self) -> tokio::process::Command {
        tokio::process::Command::from(self.command())
    }

    /// Starts `script ARGS`, a server that prints one JSON event per line on its
    /// stdout, and waits for its `{"event": "listening", "port": N}`; returns the
    /// process (killed on drop) and the port. Its later lines are read and dropped,
    /// so that it never blocks on a full pipe.
    ///
    /// # Panics
    /// When the script cannot start, prints a line that is not JSON before it
    /// listens, or ends first.
    pub async fn start_listening<I, A>(
        &self,
        script: &Path,
        args: I,
    ) -> (tokio::process::Child, u16)
    where
        I: IntoIterator<Item = A>,
        A: AsRef<std::ffi::OsStr>,
    {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let name = script.display();
        let mut child = self
            .tokio_command()
            .arg(script)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        while let Some(line) = lines.next_line().await.expect("read the script's stdout") {
            let event: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|_| panic!("{name}: not JSON: {line}"));
            if event["event"] == "listening" {
                let port = event["port"].as_u64().and_then(|p| u16::try_from(p).ok());
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                return (child, port.expect("a listening event with a port"));
            }
        }
        panic!("{name} ended before listening");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_nobody_has_is_skipped() {
        assert_eq!(
            Python::find(
                "no_such_module_for_the_proxy_tests",
                "PROXY_TEST_SUPPORT_NO_SUCH_VENV",
                "no-such-venv"
            ),
            None
        );
    }

    #[test]
    fn test_deps_are_under_the_target_directory() {
        assert!(test_deps_dir().ends_with("test-deps"));
    }
}
