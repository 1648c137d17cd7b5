//! A real `redis-server` (Debian's package, installed by
//! `scripts/deps/proxy-filters-redis.sh`) on a loopback port, without persistence,
//! stopped when its handle drops. A test that needs it fails with a message naming
//! the install script when it is not installed: nothing is skipped silently.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{ports::free_addr, temp::TempDir, tools::children};

/// A running `redis-server`.
///
/// ```
/// let redis = proxy_test_support::redis::RedisServer::start();
/// assert!(redis.url().starts_with("redis://127.0.0.1:"));
/// assert_eq!(redis.command("INCR hits"), ":1\r\n");
/// ```
#[derive(Debug)]
pub struct RedisServer {
    addr: SocketAddr,
    child: Option<(Child, children::Tracked)>,
    dir: TempDir,
}

impl RedisServer {
    /// Starts `redis-server` on a free loopback port and waits until it answers
    /// `PING`.
    ///
    /// # Panics
    /// When `redis-server` is not installed, or does not answer within 10s.
    pub fn start() -> Self {
        // The free port may be taken before redis binds it: try a few.
        let mut last = String::new();
        for _ in 0..5 {
            let mut server = Self {
                addr: free_addr(),
                child: None,
                dir: TempDir::new("redis"),
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not start: {last}");
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Kills the server (SIGKILL, as a crash): its data is gone.
    pub fn kill(&mut self) {
        if let Some((mut child, _tracked)) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty.
    ///
    /// # Panics
    /// When it does not answer within 10s (another process took the port).
    pub fn restart(&mut self) {
        self.kill();
        if let Err(e) = self.spawn() {
            panic!("redis-server did not restart on {}: {e}", self.addr);
        }
    }

    /// Makes the server hang for `secs` seconds (`DEBUG SLEEP`: it answers nobody
    /// meanwhile, its connections stay open), in the background.
    pub fn hang(&self, secs: f64) -> std::thread::JoinHandle<String> {
        let addr = self.addr;
        std::thread::spawn(move || command(addr, &format!("DEBUG SLEEP {secs}")))
    }

    /// Sends one command (inline protocol) and returns the raw reply.
    ///
    /// # Panics
    /// When the server cannot be reached.
    pub fn command(&self, line: &str) -> String {
        command(self.addr, line)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let Some(exe) = crate::tools::find("redis-server") else {
            panic!(
                "redis-server is not installed: run scripts/install-test-deps.sh \
                 (scripts/deps/proxy-filters-redis.sh installs Debian's redis-server)"
            );
        };
        let port = self.addr.port().to_string();
        let mut child = Command::new(exe)
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--protected-mode", "no"])
            // `DEBUG SLEEP` from loopback: a test can make the server hang.
            .args(["--enable-debug-command", "local"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn redis-server: {e}"))?;
        let tracked = children::track(child.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("redis-server on {} exited: {status}", self.addr));
            }
            if ping(self.addr) {
                self.child = Some((child, tracked));
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("redis-server on {} did not answer PING", self.addr));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn command(addr: SocketAddr, line: &str) -> String {
    let mut s =
        TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to redis at {addr}: {e}"));
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    s.write_all(format!("{line}\r\n").as_bytes())
        .unwrap_or_else(|e| panic!("send {line:?} to redis: {e}"));
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn ping(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
