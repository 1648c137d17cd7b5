//! Helpers of the edge end-to-end tests: the edge binary as a child process (killed
//! on drop), curl over TLS, and the embedded default rewritten for test backends.

#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use proxy_test_support::{free_addr, temp::TempDir, tools};

/// The edge binary under test.
pub const EDGE: &str = env!("CARGO_BIN_EXE_edge");
/// Each test's limit.
pub const LIMIT: Duration = Duration::from_secs(20);

/// The edge running as a child process; killed on drop, its stderr printed when a
/// test panics.
pub struct Edge {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub dir: TempDir,
    child: Child,
    _tracked: tools::children::Tracked,
}

impl Edge {
    /// The embedded default on free ports, its certificates in the temp dir.
    pub fn default_run() -> Self {
        let (listen, admin) = (free_addr(), free_addr());
        let dir = TempDir::new("edge");
        let certs = dir.join("certs");
        let args = [
            "--listen".to_string(),
            listen.to_string(),
            "--admin".into(),
            admin.to_string(),
            "--certs".into(),
            certs.display().to_string(),
        ];
        Self::start(listen, admin, dir, &args)
    }

    /// `--config FILE` (written by the caller into `dir`).
    pub fn with_config(listen: SocketAddr, admin: SocketAddr, dir: TempDir, file: &Path) -> Self {
        let args = ["--config".to_string(), file.display().to_string()];
        Self::start(listen, admin, dir, &args)
    }

    fn start(listen: SocketAddr, admin: SocketAddr, dir: TempDir, args: &[String]) -> Self {
        let stderr = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let stdout = std::fs::File::create(dir.join("stdout.log")).unwrap();
        let child = Command::new(EDGE)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap();
        let _tracked = tools::children::track(child.id());
        let mut edge = Self {
            listen,
            admin,
            dir,
            child,
            _tracked,
        };
        edge.wait_ready();
        edge
    }

    /// Until the TCP listener accepts and the HTTP/3 listener has started.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.stderr();
            if std::net::TcpStream::connect(self.listen).is_ok()
                && log.contains("http/3 listener started")
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("edge exited with {status}:\n{log}");
            }
            assert!(Instant::now() < deadline, "edge did not start:\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// The access log (JSON lines on standard output).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.join("stdout.log")).unwrap_or_default()
    }

    /// A file of the certificates directory (`edge-ca.pem`, `edge-sm2-ca.pem`).
    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join("certs").join(name)
    }

    /// `https://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.listen.port())
    }

    /// `curl -sk -i ARGS URL`; `None` (after a loud line) without curl.
    pub async fn curl(&self, path: &str, args: &[&str]) -> Option<String> {
        let url = self.url(path);
        let mut all = vec!["-sk", "-i", "--max-time", "5"];
        all.extend_from_slice(args);
        all.push(&url);
        let Some(out) = tools::curl(&all, Duration::from_secs(8)).await else {
            eprintln!("SKIPPED: curl not installed (run scripts/deps/proxy-tls.sh)");
            return None;
        };
        assert!(
            out.ok(),
            "curl {all:?} failed: {}\nedge:\n{}",
            out.text(),
            self.stderr()
        );
        Some(out.stdout_text())
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- edge stderr ---\n{}", self.stderr());
        }
    }
}

/// The status code of curl's `-i` output (the last response's).
pub fn status(out: &str) -> u16 {
    out.lines()
        .rfind(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The embedded default with its placeholders filled: addresses, certificates in
/// `certs` (made with proxy-tls's `self_signed`, as the binary does) and `backends`
/// (z1, z1, z2, z2).
pub fn default_yaml(
    listen: SocketAddr,
    admin: SocketAddr,
    certs: &Path,
    backends: [SocketAddr; 4],
) -> String {
    let names = ["localhost", "127.0.0.1"];
    proxy_tls::self_signed::international(&names)
        .unwrap()
        .write(certs, "edge")
        .unwrap();
    proxy_tls::self_signed::guomi(&["localhost"])
        .unwrap()
        .write(certs, "edge-sm2")
        .unwrap();
    let mut yaml = include_str!("../../default.yaml")
        .replace("@LISTEN@", &listen.to_string())
        .replace("@ADMIN@", &admin.to_string())
        .replace("@CERTS@", &certs.display().to_string());
    for (mark, addr) in ["@Z1A@", "@Z1B@", "@Z2A@", "@Z2B@"].iter().zip(backends) {
        yaml = yaml.replace(mark, &addr.to_string());
    }
    yaml
}
