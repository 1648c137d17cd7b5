//! What the hot upgrade tests share: sidecar processes (proxy-test-support's
//! [`ProxyProcess`] with the sidecar's arguments), one HTTP/1.1 exchange on a raw
//! socket, reading the hand-off from a log.

use std::{
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::Method;
pub(crate) use proxy_test_support::hot_upgrade::ProxyProcess;
use proxy_test_support::{client, hot_upgrade::log_field, temp::TempDir};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::common::SIDECAR;

/// Starts the sidecar `name` with `--config CONFIG --upgrade-socket DIR/upgrade.sock`
/// and `extra`; killed on drop, logs printed on panic.
pub(crate) fn start_sidecar(
    name: &str,
    dir: &TempDir,
    config: &Path,
    extra: &[&str],
) -> ProxyProcess {
    let config = config.to_str().expect("a UTF-8 config path");
    let socket = dir.join("upgrade.sock");
    let socket = socket.to_str().expect("a UTF-8 socket path");
    let mut args = vec!["--config", config, "--upgrade-socket", socket];
    args.extend_from_slice(extra);
    ProxyProcess::start(SIDECAR, name, dir.path(), &args)
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
    log_field(logs, "handed the idle connections over", field)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
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
    name: &str,
    old: &mut ProxyProcess,
    dir: &TempDir,
    config: &Path,
    window: &str,
) -> (ProxyProcess, String) {
    let new = start_sidecar(
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
pub(crate) async fn adopted(proc: &ProxyProcess) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let logs = proc.logs();
        let count = log_field(
            &logs,
            "adopted the old process's idle connections",
            "connections",
        );
        if let Some(n) = count.and_then(|n| n.parse().ok()) {
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

/// A UDP port free now (bound, then released).
pub(crate) fn free_udp_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
    socket.local_addr().expect("local address").port()
}

/// The sidecar config of the HTTP/3 upgrade tests, written to `dir/config.yaml`:
/// one route to `up` on the TCP listener `web`, and an HTTP/3 listener serving it
/// on a free UDP port with a certificate for `localhost` from `pki`; `drain` is the
/// server's drain timeout, `h3_drain` the HTTP/3 listener's. Returns the config's
/// addresses (TCP listener, admin), the file and the UDP port.
pub(crate) fn h3_upgrade_config(
    dir: &TempDir,
    up: SocketAddr,
    pki: &proxy_test_support::pki::Pki,
    drain: &str,
    h3_drain: &str,
) -> (crate::common::ConfigBuilder, std::path::PathBuf, u16) {
    use crate::common::{cluster, route, ConfigBuilder};
    let issued = pki.server("server", &["localhost"]);
    let port = free_udp_port();
    let mut cfg = ConfigBuilder::new()
        .routes(vec![route("r", "/", "up", "")])
        .cluster(cluster("up", up, ""));
    cfg.top_extra = format!(
        "runtime:\n  drain_timeout: {drain}\n\
         quic:\n  h3:\n    - serves: web\n      address: \"127.0.0.1:{port}\"\n      \
         certificate: {{cert: \"{}\", key: \"{}\"}}\n      drain_timeout: {h3_drain}\n",
        issued.cert.display(),
        issued.key.display()
    );
    let yaml = cfg.yaml().replace("  - name: main\n", "  - name: web\n");
    let config = dir.join("config.yaml");
    std::fs::write(&config, yaml).expect("config");
    (cfg, config, port)
}
