//! Shared helpers for the sidecar integration tests: the sidecar as a child process,
//! in-process upstream servers, real clients (curl, h2load) and small parsers.
//!
//! Every helper that waits has a deadline; every process started here is killed when
//! its handle drops, and a watchdog thread kills them all if a test overruns its limit.

#![allow(dead_code)]

use std::{
    convert::Infallible,
    fs::File,
    future::Future,
    io,
    net::{SocketAddr, TcpListener as StdTcpListener},
    path::{Path, PathBuf},
    pin::Pin,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        mpsc, Arc, Mutex,
    },
    task::{Context, Poll},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// The sidecar binary under test.
pub(crate) const SIDECAR: &str = env!("CARGO_BIN_EXE_sidecar");

// === timeouts and the watchdog ===

/// PIDs of live child processes, killed by the watchdog if a test hangs.
static CHILD_PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn register_pid(pid: u32) {
    CHILD_PIDS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(pid);
}

fn unregister_pid(pid: u32) {
    CHILD_PIDS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|p| *p != pid);
}

/// Runs a test body with a deadline. At `limit` the body is cancelled and the test
/// panics (dropping, and so killing, its children). If even that does not end it, a
/// watchdog thread kills the registered children and exits the process 10 s later.
pub(crate) async fn with_timeout<F: Future<Output = ()>>(limit: Duration, body: F) {
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) =
            done_rx.recv_timeout(limit + Duration::from_secs(10))
        {
            eprintln!("WATCHDOG: test still running {limit:?} + 10s after start; killing children and exiting");
            let pids = CHILD_PIDS.lock().unwrap_or_else(|e| e.into_inner()).clone();
            for pid in pids {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
            std::process::exit(101);
        }
    });
    let res = tokio::time::timeout(limit, body).await;
    let _ = done_tx.send(());
    let _ = watchdog.join();
    if res.is_err() {
        panic!("test timed out after {limit:?}");
    }
}

/// Serializes the resource-hungry tests (1 GiB bodies, h2load, reload under load)
/// across test processes, so that on a 2-core machine they do not starve each other
/// or the latency-sensitive tests. Hold the returned file until the test ends.
pub(crate) async fn heavy_test_lock() -> File {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sidecar-heavy-tests.lock");
    tokio::task::spawn_blocking(move || {
        let file = File::create(&path).expect("create lock file");
        file.lock().expect("lock heavy test lock file");
        file
    })
    .await
    .expect("lock task")
}

// === temp dirs and ports ===

/// A directory under cargo's test tmpdir, removed on drop.
#[derive(Debug)]
pub(crate) struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "{tag}-{}-{nanos}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self { path }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A loopback address with a port that was free a moment ago (bound to port 0 and
/// released), for the sidecar to listen on.
pub(crate) fn free_addr() -> SocketAddr {
    let l = StdTcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr")
}

/// Whether an external tool is on PATH. When it is not, prints a loud SKIPPED line:
/// the caller returns early.
pub(crate) fn require_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        // Written to the stream directly, not with eprintln!, so that libtest's output
        // capture does not hide it (nextest shows it with --success-output).
        let banner = format!(
            "\n==============================================\n\
             SKIPPED: {tool} not installed (run scripts/install-test-deps.sh)\n\
             ==============================================\n"
        );
        let _ = io::Write::write_all(&mut io::stderr(), banner.as_bytes());
    }
    found
}

// === config text ===

/// A route as a YAML flow mapping: `prefix` match to `cluster`, plus `extra` keys
/// (`timeout: 500ms, prefix_rewrite: "/v2/"`), which may be empty.
pub(crate) fn route(name: &str, prefix: &str, cluster: &str, extra: &str) -> String {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(", {extra}")
    };
    format!(
        "{{name: {name}, match: {{path: {{prefix: \"{prefix}\"}}}}, cluster: {cluster}{extra}}}"
    )
}

/// A cluster as a YAML flow mapping, one endpoint, plus `extra` keys.
pub(crate) fn cluster(name: &str, endpoint: SocketAddr, extra: &str) -> String {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(", {extra}")
    };
    format!("{{name: {name}, endpoints: [\"{endpoint}\"]{extra}}}")
}

/// Builds the YAML of a one-listener config (listener `main`).
#[derive(Debug, Clone)]
pub(crate) struct ConfigBuilder {
    pub(crate) listen: SocketAddr,
    pub(crate) admin: SocketAddr,
    pub(crate) protocol: String,
    /// `(name, domains, routes)`.
    pub(crate) vhosts: Vec<(String, Vec<String>, Vec<String>)>,
    pub(crate) clusters: Vec<String>,
    pub(crate) listener_extra: String,
    pub(crate) top_extra: String,
}

impl ConfigBuilder {
    /// A config listening on fresh ports, with no vhost yet.
    pub(crate) fn new() -> Self {
        Self {
            listen: free_addr(),
            admin: free_addr(),
            protocol: "auto".into(),
            vhosts: Vec::new(),
            clusters: Vec::new(),
            listener_extra: String::new(),
            top_extra: String::new(),
        }
    }

    /// Adds a vhost serving `domains`.
    pub(crate) fn vhost(mut self, name: &str, domains: &[&str], routes: Vec<String>) -> Self {
        self.vhosts.push((
            name.into(),
            domains.iter().map(|d| d.to_string()).collect(),
            routes,
        ));
        self
    }

    /// Adds a catch-all (`*`) vhost with these routes.
    pub(crate) fn routes(self, routes: Vec<String>) -> Self {
        self.vhost("default", &["*"], routes)
    }

    pub(crate) fn cluster(mut self, c: String) -> Self {
        self.clusters.push(c);
        self
    }

    pub(crate) fn yaml(&self) -> String {
        let mut y = String::new();
        y.push_str(&self.top_extra);
        y.push_str(&format!("admin:\n  address: \"{}\"\n", self.admin));
        y.push_str("listeners:\n");
        y.push_str(&format!(
            "  - name: main\n    address: \"{}\"\n    protocol: {}\n",
            self.listen, self.protocol
        ));
        y.push_str(&self.listener_extra);
        y.push_str("    virtual_hosts:\n");
        for (name, domains, routes) in &self.vhosts {
            let domains: Vec<String> = domains.iter().map(|d| format!("\"{d}\"")).collect();
            y.push_str(&format!(
                "      - name: {name}\n        domains: [{}]\n        routes:\n",
                domains.join(", ")
            ));
            for r in routes {
                y.push_str(&format!("          - {r}\n"));
            }
        }
        y.push_str("clusters:\n");
        for c in &self.clusters {
            y.push_str(&format!("  - {c}\n"));
        }
        y
    }
}

// === the sidecar process ===

/// The sidecar running as a child process; killed (SIGKILL) on drop. Its stdout and
/// stderr go to files in its temp dir, printed when a test panics.
#[derive(Debug)]
pub(crate) struct Sidecar {
    child: Option<Child>,
    pub(crate) admin: SocketAddr,
    pub(crate) config_path: PathBuf,
    dir: TempDir,
}

impl Sidecar {
    /// Writes `yaml` to a temp file, starts `sidecar --config FILE` and waits until
    /// `GET /ready` on `admin` answers 200.
    pub(crate) async fn start(yaml: &str, admin: SocketAddr) -> Self {
        let dir = TempDir::new("sidecar");
        let config_path = dir.join("config.yaml");
        std::fs::write(&config_path, yaml).expect("write config");
        let args = vec![
            std::ffi::OsString::from("--config"),
            config_path.clone().into_os_string(),
        ];
        Self::spawn(&args, admin, config_path, dir)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts `sidecar` with no arguments (its embedded default config) and waits for
    /// `GET /ready` on `admin`.
    pub(crate) async fn start_default(admin: SocketAddr) -> Self {
        let dir = TempDir::new("sidecar-default");
        let config_path = dir.join("none.yaml");
        Self::spawn(&[], admin, config_path, dir)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn spawn(
        args: &[std::ffi::OsString],
        admin: SocketAddr,
        config_path: PathBuf,
        dir: TempDir,
    ) -> Result<Self, String> {
        let stdout = File::create(dir.join("stdout.log")).expect("stdout log");
        let stderr = File::create(dir.join("stderr.log")).expect("stderr log");
        let child = Command::new(SIDECAR)
            .args(args)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn sidecar");
        register_pid(child.id());
        let mut sc = Self {
            child: Some(child),
            admin,
            config_path,
            dir,
        };
        sc.wait_ready(Duration::from_secs(20)).await?;
        Ok(sc)
    }

    /// Starts the sidecar from a [`ConfigBuilder`]. If a port picked by [`free_addr`]
    /// was taken by someone else in the meantime, picks new ones and tries again
    /// (the builder is updated, so read `cfg.listen` after this).
    pub(crate) async fn start_with(cfg: &mut ConfigBuilder) -> Self {
        for attempt in 1.. {
            let dir = TempDir::new("sidecar");
            let config_path = dir.join("config.yaml");
            std::fs::write(&config_path, cfg.yaml()).expect("write config");
            let args = vec![
                std::ffi::OsString::from("--config"),
                config_path.clone().into_os_string(),
            ];
            match Self::spawn(&args, cfg.admin, config_path, dir).await {
                Ok(sc) => return sc,
                Err(e) if attempt < 3 && e.to_ascii_lowercase().contains("in use") => {
                    eprintln!("port clash, retrying with new ports: {e}");
                    cfg.listen = free_addr();
                    cfg.admin = free_addr();
                }
                Err(e) => panic!("{e}"),
            }
        }
        unreachable!()
    }

    async fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_wait() {
                return Err(format!(
                    "sidecar exited before ready ({status})\n{}",
                    self.logs()
                ));
            }
            if let Ok(Ok(r)) = tokio::time::timeout(
                Duration::from_secs(1),
                http1_request(self.admin, Method::GET, "/ready", &[], Bytes::new()),
            )
            .await
            {
                if r.status == StatusCode::OK {
                    return Ok(());
                }
            }
            assert!(
                Instant::now() < deadline,
                "sidecar not ready (GET /ready != 200) after {limit:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The exit status if the process has exited.
    pub(crate) fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits up to `limit` for the process to exit.
    pub(crate) async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends a signal by name (`HUP`, `TERM`) with `kill`.
    pub(crate) fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} {} failed", self.pid());
    }

    /// Replaces the config file (the next reload reads it).
    pub(crate) fn write_config(&self, yaml: &str) {
        // Write then rename, so a reload never reads a half-written file.
        let tmp = self.dir.join("config.yaml.tmp");
        std::fs::write(&tmp, yaml).expect("write config");
        std::fs::rename(&tmp, &self.config_path).expect("rename config");
    }

    /// Peak resident set size (VmHWM) in bytes.
    pub(crate) fn peak_rss_bytes(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:") * 1024
    }

    /// Current resident set size (VmRSS) in bytes.
    pub(crate) fn rss_bytes(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:") * 1024
    }

    /// The child's stdout and stderr so far.
    pub(crate) fn logs(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.join(n)).unwrap_or_default();
        let tail = |s: String| {
            let lines: Vec<&str> = s.lines().collect();
            let from = lines.len().saturating_sub(60);
            lines[from..].join("\n")
        };
        format!(
            "--- sidecar stdout (tail) ---\n{}\n--- sidecar stderr (tail) ---\n{}\n---",
            tail(read("stdout.log")),
            tail(read("stderr.log"))
        )
    }

    pub(crate) async fn admin_get(&self, path: &str) -> SimpleResponse {
        http1_request(self.admin, Method::GET, path, &[], Bytes::new())
            .await
            .unwrap_or_else(|e| panic!("admin GET {path}: {e}"))
    }

    pub(crate) async fn admin_post(&self, path: &str) -> SimpleResponse {
        http1_request(self.admin, Method::POST, path, &[], Bytes::new())
            .await
            .unwrap_or_else(|e| panic!("admin POST {path}: {e}"))
    }

    /// The Prometheus text of `/stats/prometheus`.
    pub(crate) async fn metrics(&self) -> String {
        let r = self.admin_get("/stats/prometheus").await;
        assert_eq!(r.status, StatusCode::OK, "GET /stats/prometheus");
        r.text()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        if let Some(mut child) = self.child.take() {
            let pid = child.id();
            let _ = child.kill();
            let _ = child.wait();
            unregister_pid(pid);
        }
    }
}

fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{key} missing in /proc/{pid}/status"))
}

/// Runs `sidecar ARGS` to completion (e.g. `--validate`), with a timeout.
pub(crate) async fn run_sidecar(
    args: &[&std::ffi::OsStr],
    limit: Duration,
) -> std::process::Output {
    let child = tokio::process::Command::new(SIDECAR)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(limit, child)
        .await
        .unwrap_or_else(|_| panic!("sidecar {args:?} did not exit within {limit:?}"))
        .expect("run sidecar")
}

// === metrics ===

/// Sum of the samples whose line contains every one of `needles`.
pub(crate) fn metric_sum(text: &str, needles: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#') && needles.iter().all(|n| l.contains(n)))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

// === a small HTTP/1.1 client (hyper) ===

/// A fully read response.
#[derive(Debug, Clone)]
pub(crate) struct SimpleResponse {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl SimpleResponse {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One request on a fresh HTTP/1.1 connection. `headers` may include `host`.
pub(crate) async fn http1_request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<SimpleResponse, BoxError> {
    let mut client = H1Client::new(addr);
    client.request(method, path, headers, body).await
}

/// A keep-alive HTTP/1.1 client on one connection, reconnecting when the server
/// closed it between requests.
pub(crate) struct H1Client {
    addr: SocketAddr,
    sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
    /// Connections opened so far.
    pub(crate) connects: usize,
}

impl H1Client {
    pub(crate) fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            sender: None,
            connects: 0,
        }
    }

    async fn ready_sender(
        &mut self,
    ) -> Result<&mut hyper::client::conn::http1::SendRequest<Full<Bytes>>, BoxError> {
        if let Some(s) = self.sender.as_mut() {
            if s.ready().await.is_err() {
                self.sender = None;
            }
        }
        if self.sender.is_none() {
            let stream = TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.connects += 1;
            self.sender = Some(sender);
        }
        self.sender.as_mut().ok_or_else(|| "no connection".into())
    }

    pub(crate) async fn request(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<SimpleResponse, BoxError> {
        let addr = self.addr;
        let mut req = Request::builder().method(method).uri(path);
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
            req = req.header("host", addr.to_string());
        }
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let req = req.body(Full::new(body))?;
        let sender = self.ready_sender().await?;
        let resp = sender.send_request(req).await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                self.sender = None;
                return Err(e.into());
            }
        };
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(SimpleResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

// === raw TCP ===

/// Sends `bytes` on a fresh connection and reads until the peer closes or no more
/// bytes arrive for `idle`; returns what was read.
pub(crate) async fn raw_exchange(addr: SocketAddr, bytes: &[u8], idle: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(idle, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

/// Reads from `s` into `buf` until `buf` contains `needle`; returns the index after it.
pub(crate) async fn read_until(s: &mut TcpStream, buf: &mut Vec<u8>, needle: &[u8]) -> usize {
    loop {
        if let Some(i) = buf.windows(needle.len()).position(|w| w == needle) {
            return i + needle.len();
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.expect("read");
        assert!(
            n > 0,
            "connection closed; got so far: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

// === upstream servers ===

/// The body type of the in-process upstreams.
pub(crate) type RespBody = BoxBody<Bytes, Infallible>;

/// A one-buffer response body.
pub(crate) fn full(b: impl Into<Bytes>) -> RespBody {
    Full::new(b.into()).boxed()
}

/// An in-process upstream server on 127.0.0.1:0; stops accepting on drop.
#[derive(Debug)]
pub(crate) struct Upstream {
    pub(crate) addr: SocketAddr,
    /// Request body bytes received (sink), or requests served (others).
    pub(crate) counter: Arc<AtomicU64>,
    /// Connections accepted.
    pub(crate) connections: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Echo,
    Named,
    Fixed,
    Sink,
}

impl Upstream {
    /// Answers every request with JSON describing it: `upstream` (the name), `method`,
    /// `uri`, `version`, `headers` (`[[name, value], ...]`), `body`, `body_len`.
    /// Request header `x-echo-status: N` sets the status, `x-echo-delay-ms: N` delays
    /// the answer. Responses carry `x-upstream: NAME` and `x-upstream-internal: 1`.
    /// Serves HTTP/1.1 and h2c.
    pub(crate) async fn echo(name: &str) -> Self {
        Self::hyper(name, Kind::Echo).await
    }

    /// Answers every request with 200 and the body `NAME`.
    pub(crate) async fn named(name: &str) -> Self {
        Self::hyper(name, Kind::Named).await
    }

    /// Answers every request with 200 and a fixed 1 KiB body.
    pub(crate) async fn fixed_1k() -> Self {
        Self::hyper("fixed", Kind::Fixed).await
    }

    /// Reads and counts request bodies (streamed, never buffered) and answers with the
    /// count as text; `GET /download/N` streams N bytes instead (with a
    /// content-length), `GET /download-chunked/N` without one (chunked).
    pub(crate) async fn sink() -> Self {
        Self::hyper("sink", Kind::Sink).await
    }

    async fn hyper(name: &str, kind: Kind) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("local addr");
        let counter = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let name: Arc<str> = name.into();
        let (c, conns) = (counter.clone(), connections.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                conns.fetch_add(1, Ordering::Relaxed);
                let (name, c) = (name.clone(), c.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let (name, c) = (name.clone(), c.clone());
                        async move { Ok::<_, Infallible>(handle(kind, &name, &c, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            counter,
            connections,
            task,
        }
    }

    /// Accepts connections and never answers (keeps them open until dropped).
    pub(crate) async fn blackhole() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("local addr");
        let counter = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let conns = connections.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                conns.fetch_add(1, Ordering::Relaxed);
                held.push(s);
            }
        });
        Self {
            addr,
            counter,
            connections,
            task,
        }
    }

    /// Raw TCP: reads a request head, answers `101 Switching Protocols` (websocket),
    /// writes `hello-from-upstream\n`, then echoes every byte back.
    pub(crate) async fn upgrade_echo() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("local addr");
        let counter = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let (c, conns) = (counter.clone(), connections.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                conns.fetch_add(1, Ordering::Relaxed);
                let c = c.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let end = read_until(&mut s, &mut buf, b"\r\n\r\n").await;
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    if !head.contains("upgrade: websocket") {
                        let _ = s
                            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 10\r\nconnection: close\r\n\r\nno upgrade")
                            .await;
                        return;
                    }
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
                              sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nhello-from-upstream\n",
                        )
                        .await;
                    // Bytes that came with the head belong to the tunnel.
                    if buf.len() > end && s.write_all(&buf[end..]).await.is_err() {
                        return;
                    }
                    let mut chunk = [0u8; 8192];
                    loop {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                c.fetch_add(n as u64, Ordering::Relaxed);
                                if s.write_all(&chunk[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        });
        Self {
            addr,
            counter,
            connections,
            task,
        }
    }

    pub(crate) fn count(&self) -> u64 {
        self.counter.load(Ordering::Relaxed)
    }
}

async fn handle(
    kind: Kind,
    name: &str,
    counter: &AtomicU64,
    req: Request<Incoming>,
) -> Response<RespBody> {
    match kind {
        Kind::Named => {
            counter.fetch_add(1, Ordering::Relaxed);
            let _ = req.into_body().collect().await;
            Response::new(full(name.to_owned()))
        }
        Kind::Fixed => {
            counter.fetch_add(1, Ordering::Relaxed);
            let _ = req.into_body().collect().await;
            Response::new(full(Bytes::from_static(&[b'x'; 1024])))
        }
        Kind::Echo => {
            counter.fetch_add(1, Ordering::Relaxed);
            echo(name, req).await
        }
        Kind::Sink => sink(counter, req).await,
    }
}

async fn echo(name: &str, req: Request<Incoming>) -> Response<RespBody> {
    let (parts, body) = req.into_parts();
    let header = |n: &str| {
        parts
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if let Some(ms) = header("x-echo-delay-ms").and_then(|v| v.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = header("x-echo-status")
        .and_then(|v| v.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Response::builder()
                .status(StatusCode::BAD_REQUEST)
                .body(full(format!("echo: body error: {e}")))
                .expect("response")
        }
    };
    let headers: Vec<serde_json::Value> = parts
        .headers
        .iter()
        .map(|(n, v)| serde_json::json!([n.as_str(), String::from_utf8_lossy(v.as_bytes())]))
        .collect();
    let json = serde_json::json!({
        "upstream": name,
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
        "body_len": body.len(),
    });
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-upstream", name)
        .header("x-upstream-internal", "1")
        .body(full(json.to_string()))
        .expect("response")
}

async fn sink(counter: &AtomicU64, req: Request<Incoming>) -> Response<RespBody> {
    if let Some(n) = req.uri().path().strip_prefix("/download/") {
        let n: u64 = n.parse().unwrap_or(0);
        return Response::builder()
            .header("content-length", n.to_string())
            .body(BodyExt::boxed(Repeat {
                remaining: n,
                chunk: Bytes::from(vec![b'd'; 64 * 1024]),
                length_known: true,
            }))
            .expect("response");
    }
    if let Some(n) = req.uri().path().strip_prefix("/download-chunked/") {
        // No length: HTTP/1.1 sends it chunked, in 16 KiB chunks.
        let n: u64 = n.parse().unwrap_or(0);
        return Response::new(BodyExt::boxed(Repeat {
            remaining: n,
            chunk: Bytes::from(vec![b'c'; 16 * 1024]),
            length_known: false,
        }));
    }
    let mut body = req.into_body();
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    total += d.len() as u64;
                    counter.fetch_add(d.len() as u64, Ordering::Relaxed);
                }
            }
            Err(e) => {
                return Response::builder()
                    .status(StatusCode::BAD_REQUEST)
                    .body(full(format!("sink: body error after {total} bytes: {e}")))
                    .expect("response")
            }
        }
    }
    Response::new(full(total.to_string()))
}

/// A body of `remaining` bytes produced chunk by chunk, never held whole.
struct Repeat {
    remaining: u64,
    chunk: Bytes,
    /// Whether `size_hint` tells the length (else the body is sent chunked).
    length_known: bool,
}

impl Body for Repeat {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(self.chunk.len() as u64);
        self.remaining -= n;
        let data = self.chunk.slice(..n as usize);
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        if self.length_known {
            hyper::body::SizeHint::with_exact(self.remaining)
        } else {
            hyper::body::SizeHint::default()
        }
    }
}

// === the echo's JSON ===

/// What the echo upstream saw.
#[derive(Debug, Clone)]
pub(crate) struct Echoed {
    pub(crate) upstream: String,
    pub(crate) method: String,
    pub(crate) uri: String,
    pub(crate) version: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Echoed {
    pub(crate) fn parse(body: &[u8]) -> Self {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_else(|e| {
            panic!(
                "echo body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(body)
            )
        });
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        let headers = v["headers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| {
                        (
                            p[0].as_str().unwrap_or_default().to_owned(),
                            p[1].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            upstream: s("upstream"),
            method: s("method"),
            uri: s("uri"),
            version: s("version"),
            headers,
            body: s("body"),
        }
    }

    /// All values of a header (name case-insensitive).
    pub(crate) fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).into_iter().next()
    }
}

// === curl ===

/// A curl result: the final response (after any 1xx) parsed from `-i` output.
#[derive(Debug, Clone)]
pub(crate) struct CurlResponse {
    pub(crate) exit_code: i32,
    pub(crate) status: u16,
    /// The status line's protocol, e.g. `HTTP/1.1` or `HTTP/2`.
    pub(crate) protocol: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) stderr: String,
    /// Heads of interim (1xx) responses seen before the final one.
    pub(crate) interim: Vec<u16>,
}

impl CurlResponse {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Runs `curl -sS -i ARGS` (kill on timeout) and parses the final response.
pub(crate) async fn curl(args: &[&str], limit: Duration) -> CurlResponse {
    let out = run_tool("curl", &[&["-sS", "-i"], args].concat(), None, limit).await;
    let (status, protocol, headers, body, interim) = parse_http_output(&out.stdout);
    CurlResponse {
        exit_code: out.status.code().unwrap_or(-1),
        status,
        protocol,
        headers,
        body,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        interim,
    }
}

/// Runs a tool with a timeout, killing it when the timeout hits. `stdin` bytes are
/// produced by a generator task when given.
pub(crate) async fn run_tool(
    tool: &str,
    args: &[&str],
    stdin: Option<Box<dyn FnOnce(tokio::process::ChildStdin) -> JoinHandle<()> + Send>>,
    limit: Duration,
) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(tool);
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {tool}: {e}"));
    let feeder = match (stdin, child.stdin.take()) {
        (Some(f), Some(pipe)) => Some(f(pipe)),
        _ => None,
    };
    let pid = child.id().unwrap_or(0);
    register_pid(pid);
    let out = tokio::time::timeout(limit, child.wait_with_output()).await;
    unregister_pid(pid);
    if let Some(f) = feeder {
        f.abort();
    }
    match out {
        Ok(o) => o.unwrap_or_else(|e| panic!("{tool} {args:?}: {e}")),
        Err(_) => panic!("{tool} {args:?} did not finish within {limit:?} (killed)"),
    }
}

pub(crate) type ParsedHttp = (u16, String, Vec<(String, String)>, Vec<u8>, Vec<u16>);

/// Parses `curl -i` output: heads (skipping 1xx except 101) then the body.
pub(crate) fn parse_http_output(out: &[u8]) -> ParsedHttp {
    let mut rest = out;
    let mut interim = Vec::new();
    loop {
        let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
            return (0, String::new(), Vec::new(), rest.to_vec(), interim);
        };
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        let body = &rest[end + 4..];
        let mut lines = head.lines();
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.split_whitespace();
        let protocol = parts.next().unwrap_or_default().to_owned();
        let status: u16 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        if (100..200).contains(&status) && status != 101 && body.starts_with(b"HTTP/") {
            interim.push(status);
            rest = body;
            continue;
        }
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        return (status, protocol, headers, body.to_vec(), interim);
    }
}

// === h2load ===

/// The `requests:` line of h2load's summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct H2loadRequests {
    pub(crate) total: u64,
    pub(crate) started: u64,
    pub(crate) done: u64,
    pub(crate) succeeded: u64,
    pub(crate) failed: u64,
    pub(crate) errored: u64,
    pub(crate) timeout: u64,
}

/// Parses `requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed,
/// 0 errored, 0 timeout`.
pub(crate) fn parse_h2load(stdout: &str) -> Option<H2loadRequests> {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("requests:"))?;
    let field = |name: &str| -> Option<u64> {
        line.trim_start()
            .trim_start_matches("requests:")
            .split(',')
            .map(str::trim)
            .find_map(|p| p.strip_suffix(name).map(str::trim))
            .and_then(|n| n.parse().ok())
    };
    Some(H2loadRequests {
        total: field("total")?,
        started: field("started")?,
        done: field("done")?,
        succeeded: field("succeeded")?,
        failed: field("failed")?,
        errored: field("errored")?,
        timeout: field("timeout")?,
    })
}

/// Runs h2load with `args` and returns its summary and full stdout.
pub(crate) async fn h2load(args: &[&str], limit: Duration) -> (Option<H2loadRequests>, String) {
    let out = run_tool("h2load", args, None, limit).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let text = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    (parse_h2load(&stdout), text)
}

// === generated bodies ===

/// A stdin feeder writing `total` bytes of `b'u'` in 64 KiB chunks, then closing.
pub(crate) fn generator(
    total: u64,
) -> Box<dyn FnOnce(tokio::process::ChildStdin) -> JoinHandle<()> + Send> {
    Box::new(move |mut pipe| {
        tokio::spawn(async move {
            let chunk = vec![b'u'; 64 * 1024];
            let mut left = total;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                if pipe.write_all(&chunk[..n]).await.is_err() {
                    return;
                }
                left -= n as u64;
            }
            let _ = pipe.shutdown().await;
        })
    })
}

/// Creates a sparse file of `len` bytes (reads as zeros, uses no disk).
pub(crate) fn sparse_file(path: &Path, len: u64) -> io::Result<()> {
    let f = File::create(path)?;
    f.set_len(len)
}

// === scripted upstreams ===

/// Answers a request: the 0-based number of the request on this upstream, the request
/// head and its whole body.
pub(crate) type Handler =
    Arc<dyn Fn(u64, &http::request::Parts, Bytes) -> Response<RespBody> + Send + Sync>;

/// A response body made of the given frames (data, then optionally trailers).
pub(crate) fn frames_body(frames: Vec<Frame<Bytes>>) -> RespBody {
    BodyExt::boxed(Frames(frames.into()))
}

struct Frames(std::collections::VecDeque<Frame<Bytes>>);

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

impl Upstream {
    /// Serves HTTP/1.1 and h2c with `handler`; `counter` counts requests.
    pub(crate) async fn custom(handler: Handler) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("local addr");
        let counter = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let (c, conns) = (counter.clone(), connections.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                conns.fetch_add(1, Ordering::Relaxed);
                let (handler, c) = (handler.clone(), c.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (handler, c) = (handler.clone(), c.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(http_body_util::Collected::to_bytes)
                                .unwrap_or_default();
                            let n = c.fetch_add(1, Ordering::Relaxed);
                            Ok::<_, Infallible>(handler(n, &parts, body))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            counter,
            connections,
            task,
        }
    }

    /// Raw HTTP/1.1: answers every request head (requests without a body) with the
    /// bytes of `response` verbatim, keeping the connection open; `counter` counts
    /// requests.
    pub(crate) async fn raw_h1(response: &'static [u8]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("local addr");
        let counter = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let (c, conns) = (counter.clone(), connections.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                conns.fetch_add(1, Ordering::Relaxed);
                let c = c.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let end = loop {
                            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                            let mut chunk = [0u8; 4096];
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        buf.drain(..end);
                        c.fetch_add(1, Ordering::Relaxed);
                        if s.write_all(response).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            counter,
            connections,
            task,
        }
    }
}

// === a raw HTTP/1.1 response reader ===

/// A response read off a raw connection, its body de-chunked.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawResponse {
    pub(crate) status: u16,
    /// Header names lower-cased, in order.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    /// Whether the body came chunked.
    pub(crate) chunked: bool,
    /// Trailer fields of a chunked body, names lower-cased.
    pub(crate) trailers: Vec<(String, String)>,
}

impl RawResponse {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub(crate) fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads more bytes into `buf`; an error when the peer closed.
async fn fill(s: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 8192];
    let n = s.read(&mut chunk).await?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "connection closed; unparsed so far: {:?}",
                String::from_utf8_lossy(buf)
            ),
        ));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// Reads a CRLF-terminated line at the start of `buf` (reading more as needed) and
/// removes it, without the CRLF.
async fn take_line(s: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<String> {
    loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..i]).into_owned();
            buf.drain(..i + 2);
            return Ok(line);
        }
        fill(s, buf).await?;
    }
}

/// Reads one whole response (after any 1xx) from `s`; `buf` holds bytes already read
/// and keeps those read past the response. Bodies: content-length, chunked (with
/// trailers), or until close when neither is given.
pub(crate) async fn read_raw_response(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> io::Result<RawResponse> {
    let mut r = RawResponse::default();
    loop {
        let status_line = take_line(s, buf).await?;
        r.status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad status line {status_line:?}"),
                )
            })?;
        r.headers.clear();
        loop {
            let line = take_line(s, buf).await?;
            if line.is_empty() {
                break;
            }
            if let Some((n, v)) = line.split_once(':') {
                r.headers
                    .push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        if !(100..200).contains(&r.status) {
            break;
        }
    }
    if r.status == 204 || r.status == 304 {
        return Ok(r);
    }
    let chunked = r
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        r.chunked = true;
        loop {
            let size_line = take_line(s, buf).await?;
            let size_hex = size_line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_hex, 16).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad chunk size {size_line:?}: {e}"),
                )
            })?;
            if size == 0 {
                loop {
                    let line = take_line(s, buf).await?;
                    if line.is_empty() {
                        return Ok(r);
                    }
                    if let Some((n, v)) = line.split_once(':') {
                        r.trailers
                            .push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
                    }
                }
            }
            while buf.len() < size + 2 {
                fill(s, buf).await?;
            }
            r.body.extend_from_slice(&buf[..size]);
            buf.drain(..size + 2);
        }
    }
    if let Some(len) = r.header("content-length") {
        let len: usize = len.parse().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad content-length: {e}"),
            )
        })?;
        while buf.len() < len {
            fill(s, buf).await?;
        }
        r.body = buf.drain(..len).collect();
        return Ok(r);
    }
    // Until close.
    loop {
        let mut chunk = [0u8; 8192];
        match s.read(&mut chunk).await? {
            0 => break,
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
    r.body = std::mem::take(buf);
    Ok(r)
}

/// Sends `GET path` (keep-alive) on `s` and reads the response.
pub(crate) async fn raw_get(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    path: &str,
) -> io::Result<RawResponse> {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .await?;
    read_raw_response(s, buf).await
}

/// Polls `check` every 50 ms until it returns true; panics with `what` after `limit`.
pub(crate) async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
