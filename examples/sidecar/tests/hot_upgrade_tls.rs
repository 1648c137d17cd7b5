//! Hot upgrade of TLS connections: a sidecar terminating TLS is upgraded twice
//! (`--upgrade`) while a TLS 1.3 keep-alive client sends requests over one
//! connection. The old process hands the idle session over at a request boundary
//! (its keys and sequence numbers with the socket, protocol version 5) and the new
//! one continues it: no request fails and the client connects and handshakes once.
//! A TLS 1.2 client's connection is not handed over: it drains as before, and the
//! client connects again.

use crate::common;
use crate::support;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use common::*;
use proxy_test_support::{pki::Pki, temp::TempDir, with_timeout, Upstream};
use rustls::{pki_types::ServerName, ClientConfig, RootCertStore};
use support::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::{client::TlsStream, TlsConnector};

/// What a client saw.
#[derive(Default)]
struct ClientTally {
    ok: AtomicU64,
    connects: AtomicU64,
    failures: Mutex<Vec<String>>,
    stop: AtomicBool,
}

fn connector(pki: &Pki, version: &'static rustls::SupportedProtocolVersion) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca_cert_der().into()).expect("the test CA");
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[version])
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// Reads one response head and its content-length body; `Ok(None)` when the server
/// closed before any byte of it. Returns the status and whether the server closes.
async fn read_response(tls: &mut TlsStream<TcpStream>) -> Result<Option<(u16, bool)>, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("bad head {head:?}"))?;
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let n = tls.read(&mut chunk).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("closed inside a body".into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok(Some((status, head.contains("connection: close"))));
        }
        match tls.read(&mut chunk).await {
            Ok(0) if buf.is_empty() => return Ok(None),
            Ok(0) => return Err("closed inside a head".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) if buf.is_empty() => return Ok(None),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Sends GET requests over one TLS connection until told to stop; connects again
/// only when the server closed it (counted). A connection the server closed before
/// answering any byte of a request (a drain's race, for the TLS 1.2 client) is
/// replaced and the next request goes on the new one; any other error is a
/// failure. For the TLS 1.3 client every such close shows as a second connect.
async fn keep_alive_client(
    addr: std::net::SocketAddr,
    connector: TlsConnector,
    tally: Arc<ClientTally>,
) {
    let mut conn: Option<TlsStream<TcpStream>> = None;
    while !tally.stop.load(Ordering::Relaxed) {
        let tls = match conn.as_mut() {
            Some(tls) => tls,
            None => {
                let tcp = match TcpStream::connect(addr).await {
                    Ok(tcp) => tcp,
                    Err(e) => {
                        tally
                            .failures
                            .lock()
                            .expect("tally")
                            .push(format!("connect: {e}"));
                        return;
                    }
                };
                tally.connects.fetch_add(1, Ordering::Relaxed);
                let name = ServerName::try_from("a.test").expect("name");
                match connector.connect(name, tcp).await {
                    Ok(tls) => conn.insert(tls),
                    Err(e) => {
                        tally
                            .failures
                            .lock()
                            .expect("tally")
                            .push(format!("handshake: {e}"));
                        return;
                    }
                }
            }
        };
        let request = b"GET /tls HTTP/1.1\r\nhost: a.test\r\n\r\n";
        let sent = tls.write_all(request).await.and(tls.flush().await);
        let answer = match sent {
            Ok(()) => read_response(tls).await,
            Err(_) => Ok(None),
        };
        match answer {
            Ok(Some((200, closing))) => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
                if closing {
                    conn = None;
                }
            }
            Ok(Some((status, _))) => {
                tally
                    .failures
                    .lock()
                    .expect("tally")
                    .push(format!("status {status}"));
                conn = None;
            }
            Ok(None) => conn = None,
            Err(e) => {
                tally.failures.lock().expect("tally").push(e);
                conn = None;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Upgrades `old` to a new process `name` and checks the hand-over of connections.
async fn upgrade(
    name: &'static str,
    old: &mut ProxyProcess,
    dir: &TempDir,
    config: &std::path::Path,
    tally: &ClientTally,
) -> ProxyProcess {
    let before = tally.ok.load(Ordering::Relaxed);
    let mut new = start_sidecar(name, dir, config, &["--upgrade"]);
    let status = old.wait_exit(Duration::from_secs(20)).await;
    assert!(
        status.success(),
        "{} exit status {status}\n{}",
        old.name,
        old.logs()
    );
    assert!(new.running(), "{name} exited\n{}", new.logs());
    let handed = handed_connections(&old.logs());
    assert!(
        handed >= 1,
        "{handed} connections handed over\n{}",
        old.logs()
    );
    assert!(adopted(&new).await >= 1, "{}", new.logs());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        tally.ok.load(Ordering::Relaxed) > before,
        "the TLS 1.3 client got no answers across the upgrade\n{}",
        new.logs()
    );
    new
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tls13_session_goes_over_two_upgrades_and_tls12_drains() {
    with_timeout(Duration::from_secs(90), async {
        let _heavy = heavy_test_lock().await;
        let pki = Pki::new("hot-upgrade-tls");
        let leaf = pki.server("server", &["a.test"]);
        let up = Upstream::echo("echo");
        let mut cfg = ConfigBuilder::new()
            .routes(vec![route("r", "/", "c", "")])
            .cluster(cluster("c", up.addr, ""));
        cfg.top_extra = "runtime:\n  worker_threads: 2\n  drain_timeout: 5s\n".into();
        cfg.listener_extra = format!(
            "    network_filters:\n      - typed: tls\n        config:\n          \
             certificates:\n            - {{ cert: \"{}\", key: \"{}\" }}\n          \
             alpn: [http/1.1]\n          versions: [tls12, tls13]\n",
            leaf.cert.display(),
            leaf.key.display()
        );
        let dir = TempDir::new("hot-upgrade-tls");
        let config = dir.join("config.yaml");
        std::fs::write(&config, cfg.yaml()).expect("config");
        let mut first = start_sidecar("first", &dir, &config, &[]);
        first.wait_ready(cfg.admin).await;

        let tls13 = Arc::new(ClientTally::default());
        let tls12 = Arc::new(ClientTally::default());
        let clients = [
            tokio::spawn(keep_alive_client(
                cfg.listen,
                connector(&pki, &rustls::version::TLS13),
                tls13.clone(),
            )),
            tokio::spawn(keep_alive_client(
                cfg.listen,
                connector(&pki, &rustls::version::TLS12),
                tls12.clone(),
            )),
        ];
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(tls13.ok.load(Ordering::Relaxed) > 0, "{}", first.logs());

        let mut second = upgrade("second", &mut first, &dir, &config, &tls13).await;
        let third = upgrade("third", &mut second, &dir, &config, &tls13).await;

        for tally in [&tls13, &tls12] {
            tally.stop.store(true, Ordering::Relaxed);
        }
        for client in clients {
            client.await.expect("client task");
        }
        let failures = tls13.failures.lock().expect("tally").clone();
        let (ok, connects) = (
            tls13.ok.load(Ordering::Relaxed),
            tls13.connects.load(Ordering::Relaxed),
        );
        eprintln!(
            "TLS 1.3: {ok} answered, {} failed, {connects} connections; TLS 1.2: {} \
             answered, {} connections",
            failures.len(),
            tls12.ok.load(Ordering::Relaxed),
            tls12.connects.load(Ordering::Relaxed)
        );
        assert!(
            failures.is_empty(),
            "failed: {failures:#?}\n{}",
            third.logs()
        );
        assert_eq!(
            connects,
            1,
            "the TLS 1.3 client connected (and handshook) again\n{}",
            third.logs()
        );
        // The TLS 1.2 connection drained: closed by each old process, opened again.
        assert!(
            tls12.connects.load(Ordering::Relaxed) >= 3,
            "the TLS 1.2 client kept its connection through the upgrades"
        );
        let failures12 = tls12.failures.lock().expect("tally").clone();
        assert!(failures12.is_empty(), "TLS 1.2 failures: {failures12:#?}");
        assert!(tls12.ok.load(Ordering::Relaxed) > 0);
    })
    .await;
}
