//! The independent control plane of the interop tests: `ads_server.py` (Python,
//! `grpcio` + `xds-protos`, installed by `scripts/deps/proxy-xds.sh`) run as a child
//! process. The test writes JSON commands on its stdin and reads the JSON events it
//! prints: the streams opened, the responses sent, every request (with its ACK or
//! NACK) received.

// Test helpers: a failed setup should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::Stdio,
    time::Duration,
};

use proxy_test_support::python::Python;
use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin},
    sync::mpsc,
};

/// How long one event may take to come.
const EVENT_WAIT: Duration = Duration::from_secs(10);

/// A Python with grpcio and xds-protos: the deps script's venv
/// (`PROXY_XDS_VENV`), its `--target` directory, or the system one. `None` (and a
/// loud line) if none.
fn python() -> Option<Python> {
    Python::find(
        "grpc, envoy.service.discovery.v3.ads_pb2_grpc",
        "PROXY_XDS_VENV",
        "xds-venv",
    )
}

/// How the client answered a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted.
    Ack,
    /// Refused, with the error detail's message.
    Nack(String),
}

/// The Python control plane, killed when dropped.
pub struct PyControlPlane {
    /// Where it listens.
    pub port: u16,
    child: Child,
    stdin: ChildStdin,
    events: mpsc::UnboundedReceiver<Value>,
    /// Every event read so far.
    pub log: Vec<Value>,
}

impl PyControlPlane {
    /// Starts the control plane; `None` when Python lacks the packages (the test
    /// then skips, loudly).
    pub async fn start() -> Option<Self> {
        let python = python()?;
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/control_plane/ads_server.py");
        let mut cmd = python.tokio_command();
        cmd.arg("-u")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("the control plane starts");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        let _ = tx.send(v);
                    }
                    Err(_) => eprintln!("control plane: {line}"),
                }
            }
        });
        let mut cp = Self {
            port: 0,
            child,
            stdin,
            events,
            log: Vec::new(),
        };
        let listening = cp.wait_for(|e| e["event"] == "listening").await;
        cp.port = u16::try_from(listening["port"].as_u64().expect("port")).expect("port");
        Some(cp)
    }

    /// `host:port` for the client's bootstrap.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Sends one command.
    pub async fn command(&mut self, command: &Value) {
        let mut line = command.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("the control plane reads its commands");
        self.stdin.flush().await.expect("flush");
    }

    /// The next event (10 s at most), kept in the log.
    pub async fn event(&mut self) -> Value {
        let e = tokio::time::timeout(EVENT_WAIT, self.events.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no event from the control plane within 10s; so far: {:#?}",
                    self.log
                )
            })
            .expect("the control plane is running");
        self.log.push(e.clone());
        e
    }

    /// Reads events until one satisfies `pred`, and returns it.
    pub async fn wait_for(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let e = self.event().await;
            if pred(&e) {
                return e;
            }
        }
    }

    /// The request of `kind` (`request`, `ack`, `nack`) for type `ty` (`cds`, ...).
    pub async fn request(&mut self, ty: &str, kind: &str) -> Value {
        self.wait_for(|e| e["event"] == "request" && e["type"] == ty && e["kind"] == kind)
            .await
    }

    /// Replaces the control plane's snapshot with `snapshot` (version `version`),
    /// then reads events until every response sent since (to the open stream, and
    /// after the subscriptions the client changed in answer) was answered and each
    /// of `types` got an answer; returns the last answer of each type.
    pub async fn push(
        &mut self,
        version: &str,
        mut snapshot: Value,
        types: &[&str],
    ) -> BTreeMap<String, Outcome> {
        snapshot["op"] = json!("set");
        snapshot["version"] = json!(version);
        self.command(&snapshot).await;
        self.wait_for(|e| e["event"] == "set" && e["version"] == version)
            .await;
        let mut outstanding: BTreeMap<String, String> = BTreeMap::new();
        let mut answers = BTreeMap::new();
        let mut pushed = false;
        loop {
            let done =
                pushed && outstanding.is_empty() && types.iter().all(|t| answers.contains_key(*t));
            if done {
                return answers;
            }
            let e = self.event().await;
            let nonce = e["nonce"].as_str().unwrap_or_default().to_owned();
            let ty = e["type"].as_str().unwrap_or_default().to_owned();
            if e["event"] == "pushed" {
                pushed = true;
            } else if e["event"] == "sent" {
                outstanding.insert(nonce, ty);
            } else if e["event"] == "request" && outstanding.remove(&nonce).is_some() {
                let outcome = match e["error"].as_str() {
                    Some(message) => Outcome::Nack(message.to_owned()),
                    None => Outcome::Ack,
                };
                answers.insert(ty, outcome);
            }
        }
    }

    /// Ends every stream and serves again on the same port; returns once the
    /// client opened a new stream and its opening requests of `types` came.
    pub async fn restart(&mut self, types: &[&str]) -> BTreeMap<String, Value> {
        self.command(&json!({"op": "restart"})).await;
        self.wait_for(|e| e["event"] == "listening").await;
        self.wait_for(|e| e["event"] == "stream").await;
        let mut opening = BTreeMap::new();
        let wanted: BTreeSet<&str> = types.iter().copied().collect();
        while opening.len() < wanted.len() {
            let e = self.event().await;
            let ty = e["type"].as_str().unwrap_or_default();
            if e["event"] == "request" && e["kind"] == "request" && wanted.contains(ty) {
                opening.entry(ty.to_owned()).or_insert(e);
            }
        }
        opening
    }

    /// The events logged since index `from`.
    pub fn since(&self, from: usize) -> &[Value] {
        &self.log[from.min(self.log.len())..]
    }

    /// Asks the control plane to stop and waits for it.
    pub async fn quit(mut self) {
        self.command(&json!({"op": "quit"})).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}
