//! Offload under a handshake burst: p50/p99 latency of requests on already-open TLS
//! connections, without and with a burst of new RSA-2048 handshakes, with the
//! signing step inline on the proxy's I/O thread and on an offload engine.
//!
//! Run: `cargo bench -p proxy-tls --bench offload_burst` (env `BURST_SECS`, default
//! 3, seconds per phase). The proxy runs one I/O worker thread; the offload engine
//! one thread; the load generator a runtime of its own in the same process. Needs
//! `openssl` (to make the RSA key).
//!
//! Placement (Linux, `taskset`), so the clients' own CPU does not compete with the
//! proxy: `PIN=1` puts the load generator (the keep-alive clients, the upstream, the
//! in-process handshake clients) on CPU 0 and the proxy's I/O thread on CPU 1; the
//! engine thread then goes to `ENGINE_CPU` (default 1: it shares the I/O thread's
//! core; 0: it shares the load generator's). `BURST=wrk` makes the handshakes from a
//! separate process instead, `wrk -t1 -c32 -H "Connection: close"` over https (every
//! request a new connection, full handshakes: the listener issues no tickets), pinned
//! to CPU 0 when `PIN=1`. `BURST_CLIENTS` (default 32) sets the handshakes in
//! flight. The engine's threads run at the library's default priority (nice 19, so
//! the I/O thread preempts them on a shared core); `ENGINE_NICE` sets the engine's
//! `thread_priority` instead: a nice value 1-19, `0` or `normal` for the inherited
//! priority (the engine as it was before the option), `idle` for `SCHED_IDLE`.
//! `HANDSHAKE_CAP=N` sets the listener's `max_handshakes_in_progress` (default: no
//! cap). The last two columns are the CPU time (schedstat) of the proxy's I/O thread
//! and of the engine thread during the burst, per handshake.

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

use std::process::{Command, Stdio};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEEPALIVE_CONNS: usize = 8;
/// Concurrent handshaking clients (env `BURST_CLIENTS`, default 32).
fn burst_clients() -> usize {
    std::env::var("BURST_CLIENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32)
}

/// The engine's `thread_priority` from `ENGINE_NICE` (YAML, with its leading comma);
/// empty for the library's default.
fn engine_priority() -> String {
    let Ok(nice) = std::env::var("ENGINE_NICE") else {
        return String::new();
    };
    let value = match nice.trim() {
        "0" | "normal" => "normal".to_owned(),
        "idle" => "idle".to_owned(),
        n => format!("{{ nice: {n} }}"),
    };
    format!(", thread_priority: {value}")
}

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

/// This thread's id (Linux), for `taskset -p`.
fn current_tid() -> Option<String> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str().map(str::to_owned)
}

fn pin(tid: &str, cpu: &str) {
    let ok = Command::new("taskset")
        .args(["-p", "-c", cpu, tid])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("offload_burst: could not pin thread {tid} to CPU {cpu}");
    }
}

/// Ids of this process's threads whose name starts with `prefix`.
fn threads_named(prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.trim_end().starts_with(prefix) {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

/// CPU time of the threads, in nanoseconds (first field of schedstat).
fn cpu_ns(tids: &[String]) -> u64 {
    tids.iter()
        .filter_map(|t| std::fs::read_to_string(format!("/proc/self/task/{t}/schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
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
    handshakes: u64,
    handshakes_per_sec: f64,
    io_ns: u64,
    engine_ns: u64,
}

struct Setup {
    wrk: bool,
    pin: bool,
    io: Vec<String>,
}

async fn phase(
    port: u16,
    connector: &tokio_rustls::TlsConnector,
    burst: bool,
    secs: u64,
    setup: &Setup,
) -> Phase {
    let stop = Arc::new(AtomicBool::new(false));
    let handshakes = Arc::new(AtomicU64::new(0));
    let mut burst_tasks = Vec::new();
    let engine = threads_named("tls-offload");
    let (io0, engine0) = (cpu_ns(&setup.io), cpu_ns(&engine));
    let mut wrk = None;
    if burst && setup.wrk {
        let mut cmd = Command::new(if setup.pin { "taskset" } else { "wrk" });
        if setup.pin {
            cmd.args(["-c", "0", "wrk"]);
        }
        cmd.args([
            "-t1",
            &format!("-c{}", burst_clients()),
            &format!("-d{secs}s"),
        ])
        .args([
            "-H",
            "Connection: close",
            &format!("https://127.0.0.1:{port}/"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        wrk = Some(cmd.spawn().expect("BURST=wrk needs wrk"));
    } else if burst {
        for _ in 0..burst_clients() {
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
    let elapsed = started.elapsed().as_secs_f64();
    let (io_ns, engine_ns) = (cpu_ns(&setup.io) - io0, cpu_ns(&engine) - engine0);
    if let Some(child) = wrk {
        // wrk stops by itself after `secs`; "N requests in" is the handshake count
        // (each request its own connection).
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let n = text
            .lines()
            .find(|l| l.contains(" requests in "))
            .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
        handshakes.store(n, Ordering::Relaxed);
    }
    all.sort();
    let n = handshakes.load(Ordering::Relaxed);
    Phase {
        p50: pct(&all, 0.5),
        p99: pct(&all, 0.99),
        requests: all.len(),
        handshakes: n,
        handshakes_per_sec: n as f64 / elapsed,
        io_ns,
        engine_ns,
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
    let pin_env = std::env::var("PIN").is_ok_and(|v| v == "1");
    let engine_cpu = std::env::var("ENGINE_CPU").unwrap_or_else(|_| "1".to_owned());
    let use_wrk = std::env::var("BURST").is_ok_and(|v| v == "wrk");
    if pin_env {
        // Threads inherit their creator's CPUs: everything started from here on
        // (upstream, load generator) runs on CPU 0 unless moved.
        pin(&current_tid().unwrap(), "0");
    }
    println!(
        "setup: PIN={} ENGINE_CPU={} ENGINE_NICE={} HANDSHAKE_CAP={} BURST={} burst clients {}, keep-alive connections {KEEPALIVE_CONNS} (one request per ms each), {secs} s per phase",
        u8::from(pin_env),
        if pin_env { engine_cpu.as_str() } else { "-" },
        std::env::var("ENGINE_NICE").unwrap_or_else(|_| "- (library default, nice 19)".to_owned()),
        std::env::var("HANDSHAKE_CAP").unwrap_or_else(|_| "-".to_owned()),
        if use_wrk { "wrk" } else { "inproc" },
        burst_clients(),
    );
    let client = tokio_rustls::TlsConnector::from(common::client_config(&rsa));
    let up = upstream();
    println!("mode     | p50 idle | p99 idle | p50 burst | p99 burst | p99 burst/idle | burst handshakes/s | io thread µs/handshake | engine µs/handshake");
    let engine_priority = engine_priority();
    let cap = std::env::var("HANDSHAKE_CAP")
        .ok()
        .map(|n| format!(", max_handshakes_in_progress: {n}"))
        .unwrap_or_default();
    for (mode, offload) in [
        ("inline", String::new()),
        (
            "offload",
            format!(", offload: {{ engines: [{{ name: card0, threads: 1{engine_priority} }}] }}"),
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
        config: {{ certificates: [{{ cert: {cert}, key: {key} }}], session: {{ tickets: false, cache: false }}{cap}{offload} }}
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
        let thread = std::thread::Builder::new()
            .name("proxy-io".to_owned())
            .spawn(move || {
                if pin_env {
                    pin(&current_tid().unwrap(), "1");
                }
                runner.run_until(std::future::pending()).unwrap()
            })
            .unwrap();
        while server.listener_addresses().is_empty() {
            std::thread::sleep(Duration::from_millis(10));
        }
        let setup = Setup {
            wrk: use_wrk,
            pin: pin_env,
            io: threads_named("proxy-io"),
        };
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
            // One handshake first, so the engine thread (started with its first job)
            // exists and can be placed.
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let mut tls = client
                .connect(ServerName::try_from("a.test").unwrap(), tcp)
                .await
                .unwrap();
            assert!(request(&mut tls).await);
            drop(tls);
            for t in threads_named("tls-offload") {
                if pin_env {
                    pin(&t, &engine_cpu);
                }
                // What the library set: nice (field 19) and policy (41, 5 = SCHED_IDLE).
                let stat = std::fs::read_to_string(format!("/proc/self/task/{t}/stat"))
                    .unwrap_or_default();
                let fields: Vec<&str> = stat
                    .rsplit_once(')')
                    .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
                eprintln!(
                    "offload_burst: engine thread {t}: nice {}, policy {}",
                    fields.get(16).unwrap_or(&"?"),
                    fields.get(38).unwrap_or(&"?"),
                );
            }
            (
                phase(port, &client, false, secs, &setup).await,
                phase(port, &client, true, secs, &setup).await,
            )
        });
        println!(
            "{mode:8} | {:>8.2?} | {:>8.2?} | {:>9.2?} | {:>9.2?} | {:>14.2} | {:>8.0} ({} + {} requests) | {:>8.0} | {:>8.0}",
            idle.p50,
            idle.p99,
            busy.p50,
            busy.p99,
            busy.p99.as_secs_f64() / idle.p99.as_secs_f64().max(1e-9),
            busy.handshakes_per_sec,
            idle.requests,
            busy.requests,
            busy.io_ns as f64 / 1e3 / busy.handshakes.max(1) as f64,
            busy.engine_ns as f64 / 1e3 / busy.handshakes.max(1) as f64,
        );
        server.shutdown();
        let _ = thread.join();
    }
}
