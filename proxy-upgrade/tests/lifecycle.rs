//! `proxy_upgrade::serve` on both sides, in one test process: the old server serves
//! upgrades, a new one takes over (its `on_running` hook sees the upgrade in
//! progress), the old `serve` returns once it handed off, dropping its hook's guard,
//! and a keep-alive connection opened on the old server answers on from the new one.
//! A new server whose hook fails leaves the old one serving; taking over with no
//! process at the path fails at once.

use crate::common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use common::*;
use proxy_core::{config::Config, Registry, Server};
use proxy_upgrade::{ServeError, UpgradeOptions};

/// One listener, `web`, on `address` with no route (the proxy answers 404).
fn server(address: &str) -> Server {
    let yaml = format!(
        "runtime: {{worker_threads: 1, drain_timeout: 1s}}\n\
         listeners:\n\
         \x20 - name: web\n    address: \"{address}\"\n    virtual_hosts: []\n\
         clusters: []\n"
    );
    Server::new(
        Config::from_yaml(&yaml).expect("config"),
        Registry::default(),
    )
    .expect("server")
}

fn rebuild(config: Config) -> Result<Server, proxy_core::ServerError> {
    Server::new(config, Registry::default())
}

/// Sets its flag when dropped: what `on_running` returns lives until shutdown.
struct Guard(Arc<AtomicBool>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// What a hook saw and whether its guard was dropped.
#[derive(Default, Clone)]
struct Seen {
    taking_over: Arc<AtomicBool>,
    ran: Arc<AtomicBool>,
    dropped: Arc<AtomicBool>,
}

/// `serve` on a thread, its hook recording into `seen`.
fn spawn(
    server: Server,
    options: UpgradeOptions,
    seen: Seen,
) -> JoinHandle<Result<(), ServeError>> {
    std::thread::spawn(move || {
        proxy_upgrade::serve(server, options, rebuild, move |running| {
            seen.ran.store(true, Ordering::SeqCst);
            seen.taking_over
                .store(running.upgrade().is_some(), Ordering::SeqCst);
            assert!(!running.server().listener_addresses().is_empty());
            Ok::<_, std::io::Error>(Guard(seen.dropped.clone()))
        })
    })
}

/// One keep-alive request on `s`: the status code of its answer.
fn keep_alive_status(s: &mut TcpStream) -> u16 {
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).expect("read");
        assert!(n > 0, "closed before an answer");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = s.read(&mut chunk).expect("read body");
        assert!(n > 0, "closed inside the body");
        buf.extend_from_slice(&chunk[..n]);
    }
    assert!(!head.contains("connection: close"), "{head}");
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn join(thread: JoinHandle<Result<(), ServeError>>, limit: Duration) -> Result<(), ServeError> {
    let deadline = Instant::now() + limit;
    while !thread.is_finished() {
        assert!(
            Instant::now() < deadline,
            "serve did not return within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    thread.join().expect("serve panicked")
}

#[test]
fn a_served_process_hands_off_to_one_taking_over() {
    let dir = Dir::new();
    let path = dir.join("upgrade.sock");
    let old = server("127.0.0.1:0");
    let old_seen = Seen::default();
    let old_thread = spawn(
        old.clone(),
        UpgradeOptions::serving(&path),
        old_seen.clone(),
    );
    let addr = web_address(&old);
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    assert_eq!(keep_alive_status(&mut conn), 404);
    assert!(old_seen.ran.load(Ordering::SeqCst));
    assert!(!old_seen.taking_over.load(Ordering::SeqCst));
    assert!(path.exists());

    let new = server("127.0.0.1:0");
    let new_seen = Seen::default();
    let options = UpgradeOptions::serving(&path)
        .taking_over(true)
        .with_handoff_window(Duration::from_millis(100));
    let new_thread = spawn(new.clone(), options, new_seen.clone());
    // The old serve returns once it handed off and drained; its guard is gone.
    join(old_thread, Duration::from_secs(20)).expect("the old serve");
    assert!(old_seen.dropped.load(Ordering::SeqCst));
    assert!(new_seen.taking_over.load(Ordering::SeqCst));
    assert!(!new_seen.dropped.load(Ordering::SeqCst));
    assert_eq!(web_address(&new), addr);
    // The keep-alive connection went over with the listener.
    assert_eq!(keep_alive_status(&mut conn), 404);
    let mut fresh = TcpStream::connect(addr).expect("connect to the new server");
    fresh
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    assert_eq!(keep_alive_status(&mut fresh), 404);
    // It serves the next upgrade on the same path.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "the new process does not serve upgrades"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    new.shutdown();
    join(new_thread, Duration::from_secs(20)).expect("the new serve");
    assert!(new_seen.dropped.load(Ordering::SeqCst));
}

#[test]
fn a_new_server_whose_hook_fails_leaves_the_old_one_serving() {
    let dir = Dir::new();
    let path = dir.join("upgrade.sock");
    let old = server("127.0.0.1:0");
    let old_thread = spawn(old.clone(), UpgradeOptions::serving(&path), Seen::default());
    let addr = web_address(&old);

    let options = UpgradeOptions::serving(&path).taking_over(true);
    let failed = proxy_upgrade::serve(server("127.0.0.1:0"), options, rebuild, |_| {
        Err::<(), _>(std::io::Error::other("cannot start beside the server"))
    });
    assert!(
        matches!(failed, Err(ServeError::OnRunning(_))),
        "{failed:?}"
    );
    // The old server never handed off: it answers, and serves the next upgrade.
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    assert_eq!(keep_alive_status(&mut conn), 404);
    assert!(!old_thread.is_finished());
    old.shutdown();
    join(old_thread, Duration::from_secs(20)).expect("the old serve");
}

#[test]
fn taking_over_with_no_process_at_the_path_fails_binding_nothing() {
    let dir = Dir::new();
    let path = dir.join("nobody.sock");
    let options = UpgradeOptions::serving(&path).taking_over(true);
    let result = proxy_upgrade::serve(server("127.0.0.1:0"), options, rebuild, |_| {
        Ok::<_, std::io::Error>(())
    });
    assert!(
        matches!(result, Err(ServeError::TakeOver { .. })),
        "{result:?}"
    );
    assert!(!path.exists());
}
