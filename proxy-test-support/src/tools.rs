//! External clients (curl, h2load, openssl): found on `PATH`, run with a timeout
//! (killed when it hits), and, when not installed, skipped loudly: a
//! `SKIPPED: <tool> not installed` banner on stderr and `None`, so the test returns
//! early and passes. `scripts/install-test-deps.sh` installs them.

use std::{
    io::Write as _,
    path::PathBuf,
    process::{Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use tokio::{process::ChildStdin, task::JoinHandle};

/// Child processes a test started, for the watchdog of
/// [`with_timeout`](crate::with_timeout) to kill if the test hangs.
pub mod children {
    use std::sync::Mutex;

    static PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

    /// A registered child process; unregistered on drop.
    #[derive(Debug)]
    pub struct Tracked(u32);

    /// Registers the child process `pid` until the returned guard drops.
    pub fn track(pid: u32) -> Tracked {
        PIDS.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
        Tracked(pid)
    }

    impl Drop for Tracked {
        fn drop(&mut self) {
            PIDS.lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|p| *p != self.0);
        }
    }

    /// The registered child processes.
    pub fn tracked() -> Vec<u32> {
        PIDS.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Where `tool` is on `PATH`, if it is.
pub fn find(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
        })
}

/// Whether `tool` is installed; when it is not, prints a loud
/// `SKIPPED: <tool> not installed` banner to stderr: the caller returns early.
pub fn installed(tool: &str) -> bool {
    let found = find(tool).is_some();
    if !found {
        // Written to the stream directly, not with eprintln!, so that libtest's
        // output capture does not hide it (nextest shows it with --success-output).
        let banner = format!(
            "\n==============================================\n\
             SKIPPED: {tool} not installed (run scripts/install-test-deps.sh)\n\
             ==============================================\n"
        );
        let _ = std::io::stderr().write_all(banner.as_bytes());
    }
    found
}

/// What a finished tool wrote, and how it exited.
#[derive(Debug, Clone)]
pub struct ToolOutput {
    /// The exit status.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
}

impl ToolOutput {
    /// Whether it exited with status 0.
    pub fn ok(&self) -> bool {
        self.status.success()
    }

    /// Standard output then standard error, as text.
    pub fn text(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&self.stderr));
        text
    }

    /// Standard output as text.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Produces a tool's standard input (a task writing to the pipe, then closing it).
pub type Feeder = Box<dyn FnOnce(ChildStdin) -> JoinHandle<()> + Send>;

/// Runs `tool args` with `stdin` fed (none: standard input is empty), killed when
/// `limit` passes; `None` (after the SKIPPED banner) when the tool is not installed.
///
/// # Panics
/// When the tool cannot be started, or runs past `limit`.
pub async fn run(
    tool: &str,
    args: &[&str],
    stdin: Option<Feeder>,
    limit: Duration,
) -> Option<ToolOutput> {
    if !installed(tool) {
        return None;
    }
    let mut child = tokio::process::Command::new(tool)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {tool}: {e}"));
    let feeder = match (stdin, child.stdin.take()) {
        (Some(f), Some(pipe)) => Some(f(pipe)),
        _ => None,
    };
    let tracked = child.id().map(children::track);
    let out = tokio::time::timeout(limit, child.wait_with_output()).await;
    drop(tracked);
    if let Some(f) = feeder {
        f.abort();
    }
    let out = out
        .unwrap_or_else(|_| panic!("{tool} {args:?} did not finish within {limit:?} (killed)"))
        .unwrap_or_else(|e| panic!("{tool} {args:?}: {e}"));
    Some(ToolOutput {
        status: out.status,
        stdout: out.stdout,
        stderr: out.stderr,
    })
}

/// [`run`] for tests without a runtime: `cmd` (its program must be installed, see
/// [`installed`]) with `stdin` written to it, killed when `limit` passes (its
/// output so far is returned).
///
/// # Panics
/// When the program cannot be started.
pub fn run_blocking(mut cmd: Command, stdin: &[u8], limit: Duration) -> ToolOutput {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let _tracked = children::track(child.id());
    let writer = child.stdin.take().map(|mut input| {
        let stdin = stdin.to_vec();
        std::thread::spawn(move || {
            let _ = input.write_all(&stdin);
        })
    });
    let deadline = Instant::now() + limit;
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait for {cmd:?}: {e}"));
    if let Some(w) = writer {
        let _ = w.join();
    }
    ToolOutput {
        status: out.status,
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

/// `curl ARGS`, killed after `limit`; `None` when curl is not installed.
///
/// # Panics
/// As [`run`].
pub async fn curl(args: &[&str], limit: Duration) -> Option<ToolOutput> {
    run("curl", args, None, limit).await
}

/// `curl --max-time <limit> ARGS` without a runtime; `None` when curl is not
/// installed.
pub fn curl_blocking(args: &[&str], limit: Duration) -> Option<ToolOutput> {
    if !installed("curl") {
        return None;
    }
    let mut cmd = Command::new("curl");
    cmd.arg("--max-time")
        .arg(limit.as_secs().max(1).to_string())
        .args(args);
    Some(run_blocking(cmd, b"", limit + Duration::from_secs(5)))
}

/// `openssl s_client -connect 127.0.0.1:<port> -ign_eof ARGS` sending `input`,
/// killed after 10 s; `None` when openssl is not installed.
pub fn s_client(port: u16, args: &[&str], input: &str) -> Option<ToolOutput> {
    if !installed("openssl") {
        return None;
    }
    let mut cmd = Command::new("openssl");
    cmd.arg("s_client")
        .arg("-connect")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-ign_eof")
        .args(args);
    Some(run_blocking(cmd, input.as_bytes(), Duration::from_secs(10)))
}

/// The `requests:` line of h2load's summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H2loadRequests {
    /// Requests asked for.
    pub total: u64,
    /// Requests started.
    pub started: u64,
    /// Requests done.
    pub done: u64,
    /// Requests answered 2xx/3xx.
    pub succeeded: u64,
    /// Requests answered otherwise.
    pub failed: u64,
    /// Requests that failed on the connection.
    pub errored: u64,
    /// Requests that timed out.
    pub timeout: u64,
}

/// Parses `requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed,
/// 0 errored, 0 timeout` out of h2load's output.
pub fn parse_h2load(stdout: &str) -> Option<H2loadRequests> {
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

/// Runs h2load with `args`: its summary and its whole output (stdout, stderr); `None`
/// when h2load is not installed.
///
/// # Panics
/// As [`run`].
pub async fn h2load(args: &[&str], limit: Duration) -> Option<(Option<H2loadRequests>, String)> {
    let out = run("h2load", args, None, limit).await?;
    let stdout = out.stdout_text();
    let text = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    Some((parse_h2load(&stdout), text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_h2load_summary() {
        let out = "finished in 1.2s, 1000 req/s\n\
                   requests: 2000 total, 2000 started, 2000 done, 1990 succeeded, 10 failed, 0 errored, 0 timeout\n";
        let r = parse_h2load(out).expect("parsed");
        assert_eq!(r.total, 2000);
        assert_eq!(r.succeeded, 1990);
        assert_eq!(r.failed, 10);
        assert_eq!(r.timeout, 0);
    }

    #[test]
    fn a_missing_tool_is_skipped() {
        assert!(find("sh").is_some());
        assert!(!installed("no-such-tool-for-the-proxy-tests"));
    }
}
