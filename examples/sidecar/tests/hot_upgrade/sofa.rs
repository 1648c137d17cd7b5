//! The real Bolt peers of the hot upgrade tests, on sofa-rpc-node: its server (the
//! interop server of proxy-codec, `echoAfter` answering after a delay) and
//! `sofa_client.js`, multiplexed clients keeping calls in flight that count their
//! connects and socket errors. They need node and the packages
//! `scripts/deps/proxy-codec.sh` installs; without them [`sofa_rpc_node`] prints
//! `SKIPPED:` and the test returns.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};

/// node_modules with sofa-rpc-node (from `scripts/deps/proxy-codec.sh`), or `None`
/// after a loud `SKIPPED:` line.
pub(crate) fn sofa_rpc_node() -> Option<PathBuf> {
    let modules = std::env::var_os("PROXY_CODEC_NODE_DEPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| proxy_test_support::python::test_deps_dir().join("proxy-codec"))
        .join("node_modules");
    if proxy_test_support::tools::installed("node") && modules.join("sofa-rpc-node").is_dir() {
        return Some(modules);
    }
    eprintln!(
        "\n=====\nSKIPPED: node or sofa-rpc-node missing in {} (run scripts/deps/proxy-codec.sh)\n=====",
        modules.display()
    );
    None
}

/// `node SCRIPT ARGS` with the modules on its path, its stdout piped; killed on drop.
fn node(modules: &Path, script: &Path, args: &[&str]) -> Child {
    Command::new("node")
        .arg(script)
        .args(args)
        .env("NODE_PATH", modules)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn node")
}

fn here() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// sofa-rpc-node's Bolt server on `127.0.0.1`; killed on drop.
pub(crate) struct SofaServer {
    _child: Child,
    /// Its port.
    pub(crate) port: u16,
}

impl SofaServer {
    /// Starts it and waits for its port.
    pub(crate) async fn start(modules: &Path) -> Self {
        let interop = here().join("../../proxy-codec/tests/interop/server.js");
        let mut child = node(modules, &interop, &["--protocol", "bolt"]);
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let port = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("server.js starts")
            .expect("read")
            .and_then(|l| {
                l.strip_prefix("LISTENING ")
                    .and_then(|p| p.trim().parse().ok())
            })
            .expect("LISTENING <port>");
        Self {
            _child: child,
            port,
        }
    }
}

/// `sofa_client.js`: `clients` sofa-rpc-node clients to a target, one connection
/// each, `in_flight` `echoAfter` calls in flight each, until the stop file exists.
pub(crate) struct SofaClients {
    child: Child,
    out: Lines<BufReader<ChildStdout>>,
    stop: PathBuf,
    /// How many clients, as given to the script.
    pub(crate) clients: u32,
}

impl SofaClients {
    /// Starts them against `target` and waits until every client is connected (the
    /// script's `READY`); `stop` is the stop file to create later.
    ///
    /// # Panics
    /// When the script does not get ready within 20 s.
    pub(crate) async fn start(
        modules: &Path,
        target: std::net::SocketAddr,
        stop: PathBuf,
        clients: u32,
        in_flight: u32,
    ) -> Self {
        let script = here().join("tests/hot_upgrade/sofa_client.js");
        let (target, stop_arg) = (target.to_string(), stop.display().to_string());
        let (n, k) = (clients.to_string(), in_flight.to_string());
        let mut child = node(
            modules,
            &script,
            &[
                "--target",
                &target,
                "--stop-file",
                &stop_arg,
                "--clients",
                &n,
                "--in-flight",
                &k,
            ],
        );
        let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), out.next_line()).await;
        assert!(
            matches!(&ready, Ok(Ok(Some(l))) if l == "READY"),
            "sofa_client.js: {ready:?}"
        );
        Self {
            child,
            out,
            stop,
            clients,
        }
    }

    /// Stops the calls, waits for every answer, and returns the script's JSON report
    /// and whether all went well: it exited 0 and reports no failed or wrong call, no
    /// socket error (`ECONNRESET` ...) or close, and one connect per client.
    pub(crate) async fn finish(mut self) -> (String, bool) {
        std::fs::write(&self.stop, b"").expect("stop file");
        let report = tokio::time::timeout(Duration::from_secs(20), self.out.next_line())
            .await
            .expect("the client's report")
            .expect("read")
            .unwrap_or_default();
        let status = self.child.wait().await.expect("client exit");
        let clean = report.contains("\"errors\":0")
            && report.contains("\"wrong\":0")
            && report.contains("\"socketErrors\":[]")
            && report.contains(&format!("\"connects\":{}", self.clients));
        (report, status.success() && clean)
    }
}
