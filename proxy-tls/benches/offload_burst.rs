//! Offload under a handshake burst: p50/p99 latency of requests on already-open TLS
//! connections, without and with a burst of new RSA-2048 handshakes, with the
//! signing step inline on the proxy's I/O thread and on an offload engine.
//!
//! Run: `cargo bench -p proxy-tls --bench offload_burst` (env `BURST_SECS`, default
//! 3, seconds per phase). The proxy runs one I/O worker thread; the offload engine
//! one thread; the load generator a runtime of its own in the same process. Needs
//! `openssl` (to make the RSA key).

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEEPALIVE_CONNS: usize = 8;
const BURST_CLIENTS: usize = 32;

fn upstream() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let mut pending = Vec::new();
                    loop {
                        let Ok(n) = s.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        pending.extend_from_slice(&buf[..n]);
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            pending.drain(..end + 4);
                            if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                    }
                });
            }
        });
    });
    addr
}

async fn request(tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> bool {
    if tls
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.ends_with(b"\r\n\r\nok") {
        match tls.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    true
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

struct Phase {
    p50: Duration,
    p99: Duration,
    requests: usize,
    handshakes_per_sec: f64,
}

async fn phase(port: u16, connector: &tokio_rustls::TlsConnector, burst: bool, secs: u64) -> Phase {
    let stop = Arc::new(AtomicBool::new(false));
    let handshakes = Arc::new(AtomicU64::new(0));
    let mut burst_tasks = Vec::new();
    if burst {
        for _ in 0..BURST_CLIENTS {
            let (c, stop, hs) = (connector.clone(), stop.clone(), handshakes.clone());
            burst_tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(tcp) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                        continue;
                    };
                    if let Ok(mut tls) = c
                        .connect(ServerName::try_from("a.test").unwrap(), tcp)
                        .await
                    {
                        if request(&mut tls).await {
                            hs.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
    }
    let mut tasks = Vec::new();
    for _ in 0..KEEPALIVE_CONNS {
        let (c, stop) = (connector.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let mut tls = c
                .connect(ServerName::try_from("a.test").unwrap(), tcp)
                .await
                .unwrap();
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if !request(&mut tls).await {
                    break;
                }
                lat.push(t.elapsed());
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            lat
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    for t in burst_tasks {
        let _ = t.await;
    }
    all.sort();
    Phase {
        p50: pct(&all, 0.5),
        p99: pct(&all, 0.99),
        requests: all.len(),
        handshakes_per_sec: handshakes.load(Ordering::Relaxed) as f64
            / started.elapsed().as_secs_f64(),
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test`/nextest runs (and lists) it without:
    // then it only checks it starts.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let Some(rsa) = common::rsa_2048() else {
        eprintln!("SKIPPED: offload_burst needs openssl to make an RSA-2048 key");
        return;
    };
    let secs: u64 = std::env::var("BURST_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let dir = std::env::temp_dir().join(format!("proxy-tls-offload-burst-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
    std::fs::write(&cert, &rsa.cert_pem).unwrap();
    std::fs::write(&key, &rsa.key_pem).unwrap();
    let client = tokio_rustls::TlsConnector::from(common::client_config(&rsa));
    let up = upstream();
    println!("mode     | p50 idle | p99 idle | p50 burst | p99 burst | p99 burst/idle | burst handshakes/s");
    for (mode, offload) in [
        ("inline", ""),
        (
            "offload",
            ", offload: { engines: [{ name: card0, threads: 1 }] }",
        ),
    ] {
        let yaml = format!(
            r#"
runtime: {{ worker_threads: 1 }}
listeners:
  - name: tls
    address: 127.0.0.1:0
    network_filters:
      - typed: tls
        config: {{ certificates: [{{ cert: {cert}, key: {key} }}]{offload} }}
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {{ path: {{ prefix: "/" }} }}
            cluster: up
clusters:
  - name: up
    endpoints: ["{up}"]
"#,
            cert = cert.display(),
            key = key.display(),
        );
        let mut registry = proxy_core::Registry::default();
        proxy_tls::register(&mut registry);
        let server = proxy_core::Server::new(
            proxy_core::config::Config::from_yaml(&yaml).unwrap(),
            registry,
        )
        .unwrap();
        let runner = server.clone();
        let thread = std::thread::spawn(move || runner.run_until(std::future::pending()).unwrap());
        while server.listener_addresses().is_empty() {
            std::thread::sleep(Duration::from_millis(10));
        }
        let port: u16 = server.listener_addresses()[0]
            .1
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (idle, busy) = rt.block_on(async {
            (
                phase(port, &client, false, secs).await,
                phase(port, &client, true, secs).await,
            )
        });
        println!(
            "{mode:8} | {:>8.2?} | {:>8.2?} | {:>9.2?} | {:>9.2?} | {:>14.2} | {:>8.0} ({} + {} requests)",
            idle.p50,
            idle.p99,
            busy.p50,
            busy.p99,
            busy.p99.as_secs_f64() / idle.p99.as_secs_f64().max(1e-9),
            busy.handshakes_per_sec,
            idle.requests,
            busy.requests,
        );
        server.shutdown();
        let _ = thread.join();
    }
}
