//! Shared helpers of `interop_bolt.rs` and `interop_dubbo.rs`: the third-party Node
//! peers (installed by `scripts/deps/proxy-codec.sh`) as child processes, and the
//! proxy run in-process with `proxy_codec::register`.
//!
//! Every child is killed when its handle drops; every wait has a deadline.

#![allow(dead_code, clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use proxy_core::{config::Config, Registry, Server};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};

/// The limit on every test body.
pub(crate) const TEST_LIMIT: Duration = Duration::from_secs(90);

/// Where the interop programs live.
fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Where `scripts/deps/proxy-codec.sh` installs (node_modules/, python/).
fn deps_dir() -> PathBuf {
    std::env::var_os("PROXY_CODEC_NODE_DEPS")
        .map(PathBuf::from)
        .or_else(|| {
            // A relative CARGO_TARGET_DIR is relative to the workspace root, where the
            // deps script runs; tests run in the package directory.
            std::env::var_os("CARGO_TARGET_DIR").map(|t| {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("..")
                    .join(t)
                    .join("test-deps/proxy-codec")
            })
        })
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-deps/proxy-codec")
        })
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
        NodeServer {
            child,
            port,
            name: name.to_owned(),
        }
    }

    /// Runs a client program to its end and returns its JSON report.
    pub(crate) async fn client(&self, script: &str, target: &str, args: &[&str]) -> Report {
        self.spawn_client(script, target, args).finish().await
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

    /// Runs `dubbo_py_client.py` to its end and returns its JSON report.
    pub(crate) async fn client(&self, target: &str, args: &[&str]) -> Report {
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
        .finish()
        .await
    }
}

/// A running `server.js`, killed on drop.
#[derive(Debug)]
pub(crate) struct NodeServer {
    child: Child,
    /// Its port on 127.0.0.1.
    pub(crate) port: u16,
    /// The name it answers `whoami` with.
    pub(crate) name: String,
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

/// The proxy, run in-process on its own thread with the codec registered; shut down
/// on drop.
pub(crate) struct Proxy {
    server: Server,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Validates `yaml`, binds its listeners and returns once they are up.
    pub(crate) fn start(yaml: &str) -> Self {
        let mut registry = Registry::default();
        proxy_codec::register(&mut registry);
        let config = Config::from_yaml(yaml).unwrap_or_else(|e| panic!("config: {e}\n{yaml}"));
        let server =
            Server::new(config, registry).unwrap_or_else(|e| panic!("server: {e}\n{yaml}"));
        let runner = server.clone();
        let thread = std::thread::spawn(move || runner.run_until(std::future::pending()).unwrap());
        for _ in 0..1000 {
            if !server.listener_addresses().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Self {
            server,
            thread: Some(thread),
        }
    }

    /// The bound address of listener `name`.
    pub(crate) fn addr(&self, name: &str) -> String {
        self.server
            .listener_addresses()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no listener {name}"))
            .1
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.server.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One route: requests whose path starts with `/<service>` go to `cluster`.
pub(crate) fn route(service: &str, cluster: &str) -> String {
    format!(
        "          - match: {{ path: {{ prefix: \"/{service}\" }} }}\n            cluster: {cluster}\n"
    )
}

/// A listener named `name` on 127.0.0.1:0 speaking `protocol`, with `routes`.
pub(crate) fn listener(name: &str, protocol: &str, routes: &str) -> String {
    format!(
        "  - name: {name}\n    address: 127.0.0.1:0\n    protocol: {protocol}\n    virtual_hosts:\n      - name: all\n        domains: [\"*\"]\n        routes:\n{routes}"
    )
}

/// A cluster named `name` speaking `protocol` to `endpoints`.
pub(crate) fn cluster(name: &str, protocol: &str, endpoints: &[String]) -> String {
    let list = endpoints
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!("  - name: {name}\n    protocol: {protocol}\n    endpoints: [{list}]\n")
}

/// A whole config: one worker thread, a short drain (the proxy is dropped at the end
/// of every test, even a failed one), the listeners and clusters given.
pub(crate) fn config(listeners: &[String], clusters: &[String]) -> String {
    format!(
        "runtime:\n  worker_threads: 1\n  drain_timeout: 1s\nlisteners:\n{}clusters:\n{}",
        listeners.concat(),
        clusters.concat()
    )
}

/// A plain HTTP/1.1 upstream on 127.0.0.1 answering every (bodiless) request with
/// `body`; keep-alive unless the request says `connection: close`.
pub(crate) async fn http_upstream(body: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let close = head.contains("\r\nconnection: close");
                        buf.drain(..end + 4);
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncontent-type: text/plain\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() || close {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// `GET path` over HTTP/1.1 on a fresh connection; the whole response as text.
pub(crate) async fn http_get(addr: &str, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("HTTP response within 10 s")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

// === captured frames (tests/fixtures), replayed without node ===

/// Which framing a raw-socket helper reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    /// Bolt v1 or v2 (the first byte tells).
    Bolt,
    /// Dubbo (16-byte header, magic 0xdabb).
    Dubbo,
}

/// The bytes of `tests/fixtures/<name>.bin`.
pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.bin"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The whole length of the frame starting `buf`, once its fixed header is there.
pub(crate) fn frame_len(wire: Wire, buf: &[u8]) -> Option<usize> {
    let u16_at = |i: usize| usize::from(u16::from_be_bytes([buf[i], buf[i + 1]]));
    let u32_at =
        |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]) as usize;
    match wire {
        Wire::Dubbo => (buf.len() >= 16).then(|| 16 + u32_at(12)),
        Wire::Bolt if buf.first() == Some(&1) => {
            let response = *buf.get(1)? == 0;
            let head = if response { 20 } else { 22 };
            (buf.len() >= head).then(|| {
                if response {
                    head + u16_at(12) + u16_at(14) + u32_at(16)
                } else {
                    head + u16_at(14) + u16_at(16) + u32_at(18)
                }
            })
        }
        Wire::Bolt => {
            let response = *buf.get(2)? == 0;
            let head = if response { 22 } else { 24 };
            (buf.len() >= head).then(|| {
                let len = if response {
                    head + u16_at(14) + u16_at(16) + u32_at(18)
                } else {
                    head + u16_at(16) + u16_at(18) + u32_at(20)
                };
                if buf[11] == 1 {
                    len + 4
                } else {
                    len
                }
            })
        }
    }
}

/// The request id of a frame.
pub(crate) fn frame_id(wire: Wire, frame: &[u8]) -> u64 {
    match wire {
        Wire::Dubbo => u64::from_be_bytes(frame[4..12].try_into().unwrap()),
        Wire::Bolt => {
            let at = if frame[0] == 2 { 6 } else { 5 };
            u64::from(u32::from_be_bytes(frame[at..at + 4].try_into().unwrap()))
        }
    }
}

/// The frame with its request id replaced (Bolt v1 and Dubbo: no checksum to redo).
pub(crate) fn with_id(wire: Wire, frame: &[u8], id: u64) -> Vec<u8> {
    let mut out = frame.to_vec();
    match wire {
        Wire::Dubbo => out[4..12].copy_from_slice(&id.to_be_bytes()),
        Wire::Bolt => {
            assert_eq!(frame[0], 1, "with_id rewrites Bolt v1 frames only");
            out[5..9].copy_from_slice(&u32::try_from(id).unwrap().to_be_bytes());
        }
    }
    out
}

/// Reads one whole frame (10 s limit).
pub(crate) async fn read_frame(
    wire: Wire,
    s: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
) -> Vec<u8> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(len) = frame_len(wire, buf) {
                if buf.len() >= len {
                    return buf.drain(..len).collect();
                }
            }
            let mut chunk = [0u8; 8192];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "connection closed before a whole frame ({} bytes buffered)",
                buf.len()
            );
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("a frame within 10 s")
}

/// An upstream that answers every request frame with `response` under the request's
/// id, heartbeats with `heartbeat_reply`, and stays silent on one-way requests.
pub(crate) async fn replay_upstream(
    wire: Wire,
    response: Vec<u8>,
    heartbeat_reply: Vec<u8>,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (response, heartbeat_reply) = (response.clone(), heartbeat_reply.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 8192];
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    while let Some(len) = frame_len(wire, &buf).filter(|l| buf.len() >= *l) {
                        let frame: Vec<u8> = buf.drain(..len).collect();
                        let id = frame_id(wire, &frame);
                        let reply = match wire {
                            // flag: 0x80 request, 0x40 two-way, 0x20 event
                            Wire::Dubbo if frame[2] & 0x20 != 0 => Some(&heartbeat_reply),
                            Wire::Dubbo if frame[2] & 0x40 != 0 => Some(&response),
                            Wire::Dubbo => None,
                            // type 1 request, 2 one-way; cmdcode 0 heartbeat
                            Wire::Bolt if frame[2..4] == [0, 0] => Some(&heartbeat_reply),
                            Wire::Bolt if frame[1] == 1 => Some(&response),
                            Wire::Bolt => None,
                        };
                        if let Some(reply) = reply {
                            if s.write_all(&with_id(wire, reply, id)).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// An upstream that accepts connections and reads forever without answering.
pub(crate) async fn silent_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut chunk = [0u8; 8192];
                while let Ok(n) = s.read(&mut chunk).await {
                    if n == 0 {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A loopback address nothing listens on (bound, then closed).
pub(crate) fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    addr
}

/// One route with a timeout: paths starting with `/<service>` go to `cluster`.
pub(crate) fn route_with_timeout(service: &str, cluster: &str, timeout: &str) -> String {
    format!(
        "          - match: {{ path: {{ prefix: \"/{service}\" }} }}\n            cluster: {cluster}\n            timeout: {timeout}\n"
    )
}

/// One route on a whole-path regular expression.
pub(crate) fn route_regex(regex: &str, cluster: &str) -> String {
    format!(
        "          - match: {{ path: {{ regex: '{regex}' }} }}\n            cluster: {cluster}\n"
    )
}
