//! Hot upgrade tests of the example binaries: the binary as a child process serving
//! upgrades (its stderr in a file, killed on drop), a process it started itself
//! (`SIGUSR2`) stopped on drop, and a keep-alive HTTP/1.1 request stream that
//! counts what it saw through the upgrade.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Method, StatusCode};
use tokio::task::JoinHandle;

use crate::{client, tools::children};

/// A proxy binary run as a child process, its stderr (and its children's, which
/// inherit it) in `NAME.log`; killed on drop, its log printed when a test panics.
#[derive(Debug)]
pub struct ProxyProcess {
    child: Child,
    _tracked: children::Tracked,
    log: PathBuf,
    /// The name in messages and of the log file.
    pub name: String,
}

impl ProxyProcess {
    /// Runs `binary ARGS` with `RUST_LOG=info`, logging to `dir/NAME.log`.
    ///
    /// # Panics
    /// When the log file cannot be created or the binary cannot start.
    pub fn start(binary: &str, name: &str, dir: &Path, args: &[&str]) -> Self {
        let log = dir.join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log).expect("log file");
        let child = Command::new(binary)
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn the proxy");
        Self {
            _tracked: children::track(child.id()),
            child,
            log,
            name: name.to_owned(),
        }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log so far, ANSI colours removed.
    pub fn logs(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for it to exit, at most `limit`.
    ///
    /// # Panics
    /// When it runs on past `limit` (with its log).
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
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

    /// Waits until its log has `needle` at least `times` times.
    ///
    /// # Panics
    /// When it does not within `limit` (with its log).
    pub async fn wait_log(&self, needle: &str, times: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.logs().matches(needle).count() < times {
            assert!(
                Instant::now() < deadline,
                "{}: not {times} times {needle:?} within {limit:?}\n{}",
                self.name,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `GET /ready` on the admin listener `admin` answers 200.
    ///
    /// # Panics
    /// When it exits first or is not ready within 20 s.
    pub async fn wait_ready(&mut self, admin: SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(self.running(), "{} exited\n{}", self.name, self.logs());
            let ready = tokio::time::timeout(
                Duration::from_secs(1),
                client::request(admin, Method::GET, "/ready", &[], Bytes::new()),
            )
            .await;
            if matches!(ready, Ok(Ok(ref r)) if r.status == StatusCode::OK) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready\n{}",
                self.name,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `signal` (`USR2`, `TERM`) with `kill`.
    ///
    /// # Panics
    /// When `kill` fails.
    pub fn signal(&self, signal: &str) {
        send_signal(self.pid(), signal);
    }

    /// The new process this one started on `SIGUSR2`, once its log past byte `after`
    /// (0: all of it; the log's length before a second `SIGUSR2`) names its pid
    /// (`SIGUSR2: started the new process pid=...`).
    ///
    /// # Panics
    /// When no such line appears within 10 s.
    pub async fn started_on_usr2(&self, after: usize) -> ForeignProcess {
        let mut pid = None;
        let found = crate::eventually(Duration::from_secs(10), || {
            let logs = self.logs();
            let fresh = logs.get(after.min(logs.len())..).unwrap_or_default();
            pid = log_field(fresh, USR2_STARTED, "pid").and_then(|p| p.parse().ok());
            pid.is_some()
        })
        .await;
        assert!(
            found,
            "{} started no new process\n{}",
            self.name,
            self.logs()
        );
        ForeignProcess(pid.unwrap_or_default())
    }
}

/// What a process serving upgrades logs when `SIGUSR2` made it start the new one.
const USR2_STARTED: &str = "SIGUSR2: started the new process";

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- {} log ---\n{}", self.name, self.logs());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process this test did not start itself (the new process a proxy started on
/// `SIGUSR2`): sent SIGKILL on drop, if it still runs.
#[derive(Debug)]
pub struct ForeignProcess(pub u32);

impl ForeignProcess {
    /// Whether it runs (exists and is not a zombie).
    pub fn running(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.0))
            .ok()
            .and_then(|stat| {
                let state = stat
                    .rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .next()?
                    .to_owned();
                Some(state != "Z" && state != "X")
            })
            .unwrap_or(false)
    }
}

impl Drop for ForeignProcess {
    fn drop(&mut self) {
        if self.running() {
            let _ = Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
}

/// Sends `signal` to `pid` with `kill`.
///
/// # Panics
/// When `kill` fails.
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
    assert!(
        status.map(|s| s.success()).unwrap_or(false),
        "kill -{signal} {pid}"
    );
}

/// The value of `field=` (a `tracing` field) on the first line of `logs` containing
/// `message`.
pub fn log_field(logs: &str, message: &str, field: &str) -> Option<String> {
    let line = logs.lines().find(|l| l.contains(message))?;
    let value = line.split(&format!(" {field}=")).nth(1)?;
    Some(
        value
            .split_whitespace()
            .next()?
            .trim_matches('"')
            .to_owned(),
    )
}

fn strip_ansi(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
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

/// What a [`RequestStream`] saw.
#[derive(Debug, Default)]
pub struct Tally {
    ok: AtomicU64,
    failures: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl Tally {
    /// Requests answered with the expected status so far.
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// The failures so far: another status, an error on the connection.
    pub fn failures(&self) -> Vec<String> {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Requests one after another on one keep-alive HTTP/1.1 connection (no retry: a
/// request that meets a closed connection is a failure, and the next one connects
/// again, counted), `pause` after each answer, until stopped.
#[derive(Debug)]
pub struct RequestStream {
    tally: Arc<Tally>,
    task: JoinHandle<usize>,
}

/// What a [`RequestStream`] saw once stopped.
#[derive(Debug)]
pub struct StreamReport {
    /// Requests answered with the expected status.
    pub ok: u64,
    /// Everything else.
    pub failures: Vec<String>,
    /// Connections opened: 1 when the connection survived.
    pub connects: usize,
}

impl RequestStream {
    /// Starts `GET path` with `headers` on `addr`, each expected to answer `expect`.
    pub fn start(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
        expect: StatusCode,
        pause: Duration,
    ) -> Self {
        let tally = Arc::new(Tally::default());
        let seen = tally.clone();
        let path = path.to_owned();
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        let task = tokio::spawn(async move {
            let mut conn = client::H1Client::new(addr);
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            while !seen.stop.load(Ordering::Relaxed) {
                match conn
                    .request(Method::GET, &path, &headers, Bytes::new())
                    .await
                {
                    Ok(r) if r.status == expect => {
                        seen.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => seen.fail(format!("status {} ({})", r.status, r.text())),
                    Err(e) => seen.fail(format!("request: {e}")),
                }
                tokio::time::sleep(pause).await;
            }
            conn.connects
        });
        Self { tally, task }
    }

    /// What it saw so far.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Waits until `n` more requests than now were answered, at most `limit`.
    pub async fn wait_more(&self, n: u64, limit: Duration) -> bool {
        let target = self.tally.ok() + n;
        crate::eventually(limit, || self.tally.ok() >= target).await
    }

    /// Stops after the request in flight.
    ///
    /// # Panics
    /// When the stream's task panicked.
    pub async fn stop(self) -> StreamReport {
        self.tally.stop.store(true, Ordering::Relaxed);
        let connects = self.task.await.expect("the request stream");
        StreamReport {
            ok: self.tally.ok(),
            failures: self.tally.failures(),
            connects,
        }
    }
}

impl Tally {
    fn fail(&self, what: String) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(what);
    }
}
