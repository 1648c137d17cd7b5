//! What the hot upgrade tests share: sidecar processes with their logs, one HTTP/1.1
//! exchange on a raw socket, waiting for readiness, reading the hand-off from a log.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Method, StatusCode};
use proxy_test_support::{client, temp::TempDir, tools::children};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::common::SIDECAR;

/// A sidecar process with its own arguments; killed on drop, logs printed on panic.
pub(crate) struct Proc {
    child: Child,
    _tracked: children::Tracked,
    log: PathBuf,
    pub(crate) name: &'static str,
}

impl Proc {
    pub(crate) fn start(
        name: &'static str,
        dir: &TempDir,
        config: &PathBuf,
        extra: &[&str],
    ) -> Self {
        let log = dir.join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log).expect("log file");
        let child = Command::new(SIDECAR)
            .arg("--config")
            .arg(config)
            .arg("--upgrade-socket")
            .arg(dir.join("upgrade.sock"))
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn sidecar");
        let tracked = children::track(child.id());
        Self {
            child,
            _tracked: tracked,
            log,
            name,
        }
    }

    /// The log, without terminal colours.
    pub(crate) fn logs(&self) -> String {
        let raw = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // ESC [ ... m
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    pub(crate) async fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {limit:?}\n{}",
                self.name,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- {} log ---\n{}", self.name, self.logs());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) enum Exchange {
    /// Status, and whether the server closes the connection after it.
    Answer(u16, bool),
    /// Closed or reset before any byte of an answer.
    NoAnswer(String),
    /// Failed after part of an answer.
    Broken(String),
}

/// One GET on `s`; reads the whole answer.
pub(crate) async fn exchange(s: &mut TcpStream, close: bool) -> Exchange {
    let req = if close {
        "GET /hot HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    } else {
        "GET /hot HTTP/1.1\r\nhost: x\r\n\r\n"
    };
    if let Err(e) = s.write_all(req.as_bytes()).await {
        return Exchange::NoAnswer(format!("write: {e}"));
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) if buf.is_empty() => {
                return Exchange::NoAnswer("closed before an answer".into())
            }
            Ok(Ok(0)) => return Exchange::Broken("closed inside the head".into()),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => return Exchange::Broken(format!("read: {e}")),
            Err(_) => return Exchange::Broken("no answer within 5s".into()),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let closing = head.contains("connection: close");
    while buf.len() < head_end + length {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return Exchange::Broken("body cut short".into()),
        }
    }
    Exchange::Answer(status, closing)
}

/// How many connections the old process's log says it handed over.
pub(crate) fn handed_connections(logs: &str) -> u64 {
    handed(logs, "connections")
}

/// A count of the old process's hand-over log line: `connections`, `protocol` (of
/// them, Bolt or Dubbo) or `with_unread` (of them, with bytes read and not parsed).
pub(crate) fn handed(logs: &str, field: &str) -> u64 {
    logs.lines()
        .find(|l| l.contains("handed the idle connections over"))
        .and_then(|l| l.split(&format!(" {field}=")).nth(1))
        .and_then(|n| n.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

pub(crate) async fn wait_ready(admin: SocketAddr, proc: &mut Proc) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(proc.running(), "{} exited\n{}", proc.name, proc.logs());
        if let Ok(Ok(r)) = tokio::time::timeout(
            Duration::from_secs(1),
            client::request(admin, Method::GET, "/ready", &[], Bytes::new()),
        )
        .await
        {
            if r.status == StatusCode::OK {
                return;
            }
        }
        assert!(Instant::now() < deadline, "not ready\n{}", proc.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads one whole answer from `s` (a 200 with a content-length body).
pub(crate) async fn read_answer(s: &mut TcpStream) -> Exchange {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= i + 4 + length {
                return Exchange::Answer(status, head.contains("connection: close"));
            }
        }
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            Ok(Ok(_)) => return Exchange::NoAnswer(format!("closed after {} bytes", buf.len())),
            Ok(Err(e)) => return Exchange::NoAnswer(e.to_string()),
            Err(_) => return Exchange::NoAnswer("no answer within 5s".into()),
        }
    }
}

/// Starts `name` with `--upgrade --upgrade-window WINDOW` beside `old`, waits for
/// `old` to exit 0 (it handed everything over, drained), and returns the new process
/// and the old one's log.
pub(crate) async fn take_over(
    name: &'static str,
    old: &mut Proc,
    dir: &TempDir,
    config: &PathBuf,
    window: &str,
) -> (Proc, String) {
    let new = Proc::start(
        name,
        dir,
        config,
        &["--upgrade", "--upgrade-window", window],
    );
    let status = old.wait_exit(Duration::from_secs(15)).await;
    assert!(
        status.success(),
        "{} exit status {status}\n{}",
        old.name,
        old.logs()
    );
    (new, old.logs())
}

/// How many connections `proc`'s log says it adopted from the old process, once it
/// says so (within 5 s).
pub(crate) async fn adopted(proc: &Proc) -> u64 {
    let needle = "adopted the old process's idle connections connections=";
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let logs = proc.logs();
        if let Some(n) = logs
            .lines()
            .find_map(|l| l.split(needle).nth(1))
            .and_then(|n| n.split_whitespace().next())
            .and_then(|n| n.parse().ok())
        {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "{} adopted nothing\n{logs}",
            proc.name
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The admin page's `proxy_listener_connections_total` of `listener`: what the process
/// serving `admin` accepted or adopted, plus what it carried in from the processes
/// before it (their final counts).
pub(crate) async fn connections_total(admin: SocketAddr, listener: &str) -> u64 {
    let r = client::request(admin, Method::GET, "/stats/prometheus", &[], Bytes::new())
        .await
        .expect("metrics");
    let label = format!("listener=\"{listener}\"");
    crate::common::metric_sum(
        &String::from_utf8_lossy(&r.body),
        &["proxy_listener_connections_total{", &label],
    ) as u64
}
