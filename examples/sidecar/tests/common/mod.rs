//! Helpers of the sidecar integration tests: the sidecar as a child process, the
//! YAML of its config, curl's `-i` output and metric sums. What the crates' tests
//! share (upstreams, clients, tools, timeouts) is in `proxy-test-support`.
//!
//! Every helper that waits has a deadline; every process started here is killed when
//! its handle drops, and `with_timeout`'s watchdog kills them all if a test overruns.

#![allow(dead_code)]

use std::{
    fs::File,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Method, StatusCode};
use proxy_test_support::{
    client::{self, Response},
    free_addr,
    temp::TempDir,
    tools::{self, children},
};

/// The sidecar binary under test.
pub(crate) const SIDECAR: &str = env!("CARGO_BIN_EXE_sidecar");

// === a heavy test at a time ===

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
    tracked: Option<children::Tracked>,
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

    /// Writes `yaml` to a temp file and starts `sidecar --config FILE` from a shell
    /// that first runs `shell_prefix` (e.g. `ulimit -Sn 256`), then waits for
    /// `GET /ready` on `admin`. The sidecar keeps the shell's process id.
    pub(crate) async fn start_in_shell(yaml: &str, admin: SocketAddr, shell_prefix: &str) -> Self {
        let dir = TempDir::new("sidecar");
        let config_path = dir.join("config.yaml");
        std::fs::write(&config_path, yaml).expect("write config");
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(format!("{shell_prefix} && exec \"$0\" \"$@\""))
            .arg(SIDECAR)
            .arg("--config")
            .arg(&config_path);
        Self::spawn_command(cmd, admin, config_path, dir)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn spawn(
        args: &[std::ffi::OsString],
        admin: SocketAddr,
        config_path: PathBuf,
        dir: TempDir,
    ) -> Result<Self, String> {
        let mut cmd = Command::new(SIDECAR);
        cmd.args(args);
        Self::spawn_command(cmd, admin, config_path, dir).await
    }

    async fn spawn_command(
        mut cmd: Command,
        admin: SocketAddr,
        config_path: PathBuf,
        dir: TempDir,
    ) -> Result<Self, String> {
        let stdout = File::create(dir.join("stdout.log")).expect("stdout log");
        let stderr = File::create(dir.join("stderr.log")).expect("stderr log");
        let child = cmd
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn sidecar");
        let tracked = Some(children::track(child.id()));
        let mut sc = Self {
            child: Some(child),
            tracked,
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
                client::request(self.admin, Method::GET, "/ready", &[], Bytes::new()),
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

    pub(crate) async fn admin_get(&self, path: &str) -> Response {
        client::request(self.admin, Method::GET, path, &[], Bytes::new())
            .await
            .unwrap_or_else(|e| panic!("admin GET {path}: {e}"))
    }

    pub(crate) async fn admin_post(&self, path: &str) -> Response {
        client::request(self.admin, Method::POST, path, &[], Bytes::new())
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
            let _ = child.kill();
            let _ = child.wait();
        }
        self.tracked = None;
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

/// Runs `curl -sS -i ARGS` (kill on timeout) and parses the final response; the
/// caller has checked curl is installed (`tools::installed`).
pub(crate) async fn curl(args: &[&str], limit: Duration) -> CurlResponse {
    let out = tools::curl(&[&["-sS", "-i"], args].concat(), limit)
        .await
        .expect("curl is installed");
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

/// A sidecar in front of an echo upstream whose listener has `limits: {LIMITS}`.
pub(crate) async fn limits_sidecar(
    limits: &str,
) -> (Sidecar, proxy_test_support::Upstream, ConfigBuilder) {
    let up = proxy_test_support::Upstream::echo("echo");
    let mut cfg = ConfigBuilder::new()
        .routes(vec![route("all", "/", "echo", "")])
        .cluster(cluster("echo", up.addr, ""));
    cfg.listener_extra = format!("    limits: {{{limits}}}\n");
    let sc = Sidecar::start_with(&mut cfg).await;
    (sc, up, cfg)
}
