//! The third-party peers as child processes: Node programs (sofa-rpc-node, dubbo2.js)
//! and the PyPI Dubbo client, installed by `scripts/deps/proxy-codec.sh`, each found
//! or reported `SKIPPED:` loudly. Every child is killed when its handle drops; every
//! wait has a deadline.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};

/// Where the interop programs live.
fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Where `scripts/deps/proxy-codec.sh` installs (node_modules/, python/).
fn deps_dir() -> PathBuf {
    std::env::var_os("PROXY_CODEC_NODE_DEPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| proxy_test_support::python::test_deps_dir().join("proxy-codec"))
}

/// Node and the installed packages, or `None` after a loud `SKIPPED:` line.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    modules: PathBuf,
}

impl Node {
    /// Finds node and the node_modules `scripts/deps/proxy-codec.sh` installs.
    pub(crate) fn find(test: &str) -> Option<Self> {
        let modules = deps_dir().join("node_modules");
        let node_ok = std::process::Command::new("node")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !node_ok {
            eprintln!("SKIPPED: {test}: node is not installed (run scripts/deps/proxy-codec.sh)");
            return None;
        }
        for pkg in [
            "sofa-rpc-node",
            "sofa-bolt-node",
            "dubbo2.js",
            "js-remoting-for-apache-dubbo",
        ] {
            if !modules.join(pkg).is_dir() {
                eprintln!(
                    "SKIPPED: {test}: npm package {pkg} missing in {} (run scripts/deps/proxy-codec.sh)",
                    modules.display()
                );
                return None;
            }
        }
        Some(Self { modules })
    }

    fn command(&self, script: &str) -> Command {
        let mut cmd = Command::new("node");
        cmd.arg(interop_dir().join(script))
            .env("NODE_PATH", &self.modules)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        cmd
    }

    /// Starts `server.js` and waits for its port.
    pub(crate) async fn server(&self, protocol: &str, name: &str, extra: &[&str]) -> NodeServer {
        let mut child = self
            .command("server.js")
            .args(["--protocol", protocol, "--name", name])
            .args(extra)
            .spawn()
            .expect("spawn node server.js");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("{protocol} server {name} did not start in 20 s"))
            .unwrap()
            .unwrap_or_default();
        let port = line
            .strip_prefix("LISTENING ")
            .and_then(|p| p.trim().parse::<u16>().ok())
            .unwrap_or_else(|| panic!("{protocol} server {name} printed {line:?}"));
        NodeServer { child, port }
    }

    /// Starts a client program; read its output with [`RunningClient`].
    pub(crate) fn spawn_client(&self, script: &str, target: &str, args: &[&str]) -> RunningClient {
        let mut child = self
            .command(script)
            .args(["--target", target])
            .args(args)
            .spawn()
            .expect("spawn node client");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        RunningClient {
            child,
            lines,
            what: format!("{script} {}", args.join(" ")),
        }
    }
}

/// dubbo-ssl-python (PyPI), or `None` after a loud `SKIPPED:` line.
#[derive(Debug, Clone)]
pub(crate) struct Python {
    path: PathBuf,
}

impl Python {
    /// Finds python3 and the packages `scripts/deps/proxy-codec.sh` installs.
    pub(crate) fn find(test: &str) -> Option<Self> {
        let path = deps_dir().join("python");
        let ok = std::process::Command::new("python3")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "SKIPPED: {test}: python3 is not installed (run scripts/deps/proxy-codec.sh)"
            );
            return None;
        }
        if !path.join("dubbo_ssl").is_dir() {
            eprintln!(
                "SKIPPED: {test}: PyPI dubbo-ssl-python missing in {} (run scripts/deps/proxy-codec.sh)",
                path.display()
            );
            return None;
        }
        Some(Self { path })
    }

    /// Starts `dubbo_py_client.py`; read its output with [`RunningClient`].
    pub(crate) fn spawn_client(&self, target: &str, args: &[&str]) -> RunningClient {
        let mut child = Command::new("python3")
            .arg(interop_dir().join("dubbo_py_client.py"))
            .args(["--target", target])
            .args(args)
            .env("PYTHONPATH", &self.path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn python3 dubbo_py_client.py");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        RunningClient {
            child,
            lines,
            what: format!("dubbo_py_client.py {}", args.join(" ")),
        }
    }
}

/// A running `server.js`, killed on drop.
#[derive(Debug)]
pub(crate) struct NodeServer {
    child: Child,
    /// Its port on 127.0.0.1.
    pub(crate) port: u16,
}

impl NodeServer {
    /// `127.0.0.1:<port>`.
    pub(crate) fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILL: the server dies with its connections open and calls in flight.
    pub(crate) async fn kill(&mut self) {
        self.child.kill().await.unwrap();
    }
}

/// A client program still running.
#[derive(Debug)]
pub(crate) struct RunningClient {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    what: String,
}

impl RunningClient {
    /// Waits for the client to print `marker` on a line of its own.
    pub(crate) async fn wait_for_line(&mut self, marker: &str) {
        let what = self.what.clone();
        tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                if line.trim() == marker {
                    return;
                }
            }
            panic!("{what}: ended before printing {marker}");
        })
        .await
        .unwrap_or_else(|_| panic!("{what}: no {marker} line in 30 s"));
    }

    /// Waits for the end and parses the last line as the report.
    pub(crate) async fn finish(mut self) -> Report {
        let what = self.what.clone();
        let mut last = String::new();
        let run = async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                if !line.trim().is_empty() {
                    last = line;
                }
            }
            self.child.wait().await.unwrap()
        };
        let status = tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .unwrap_or_else(|_| panic!("{what}: did not finish in 60 s"));
        let json: Value = serde_json::from_str(&last).unwrap_or_else(|e| {
            panic!("{what}: exit {status}, last line {last:?} is not JSON: {e}")
        });
        eprintln!("{what}: exit {status}: {json}");
        Report {
            json,
            exit_ok: status.success(),
            what,
        }
    }
}

/// A client's JSON report.
#[derive(Debug)]
pub(crate) struct Report {
    /// The parsed line.
    pub(crate) json: Value,
    /// Whether the client exited 0 (all its own checks held).
    pub(crate) exit_ok: bool,
    what: String,
}

impl Report {
    /// Panics with the whole report unless the client's own checks held.
    pub(crate) fn assert_ok(&self) -> &Self {
        assert!(
            self.exit_ok && self.json["ok"] == Value::Bool(true),
            "{}: {}",
            self.what,
            self.json
        );
        self
    }

    /// A number at a JSON pointer (`/calls/ok`).
    pub(crate) fn num(&self, pointer: &str) -> u64 {
        self.json
            .pointer(pointer)
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("{}: no number at {pointer} in {}", self.what, self.json))
    }

    /// A string at a JSON pointer.
    pub(crate) fn str(&self, pointer: &str) -> &str {
        self.json
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{}: no string at {pointer} in {}", self.what, self.json))
    }
}
