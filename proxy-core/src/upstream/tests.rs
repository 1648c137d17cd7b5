//! Upstream pooling on real sockets: most-recently-used reuse, idle expiry under
//! load, the idle bound, and per-worker HTTP/1.1 pools and HTTP/2 connections.
//!
//! The HTTP/1.1 upstream answers each request with the source port of the
//! connection it came on, so a test sees which pooled connection carried it.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

use futures_util::future::join_all;
use http_body_util::BodyExt;
use proxy_test_support::{eventually, upstream::spawn_raw, with_timeout};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{worker_count, Upstream};
use crate::{
    config::{ClusterConfig, PoolConfig, RuntimeConfig, UpstreamProtocol},
    Body,
};

const LIMIT: Duration = Duration::from_secs(30);

/// An HTTP/1.1 upstream answering each request with its connection's source port
/// (after `N` ms for a target `/delay/N`), counting the connections open.
struct PortEcho {
    server: proxy_test_support::Upstream,
    open: Arc<AtomicUsize>,
    /// Source ports of the connections the proxy closed, in order.
    closed: Arc<Mutex<Vec<u16>>>,
}

impl PortEcho {
    fn start() -> Self {
        let open = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(Mutex::new(Vec::new()));
        let (o, c) = (open.clone(), closed.clone());
        let server = spawn_raw(move |mut s, _| {
            let (open, closed) = (o.clone(), c.clone());
            async move {
                open.fetch_add(1, Ordering::SeqCst);
                let port = s.peer_addr().map_or(0, |a| a.port());
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                'conn: loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        if let Some(ms) = delay_ms(&head) {
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                        }
                        let body = port.to_string();
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            break 'conn;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                closed.lock().expect("closed ports").push(port);
                open.fetch_sub(1, Ordering::SeqCst);
            }
        });
        Self {
            server,
            open,
            closed,
        }
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    fn closed(&self) -> Vec<u16> {
        self.closed.lock().expect("closed ports").clone()
    }
}

/// The `N` of a request line `GET /delay/N HTTP/1.1`.
fn delay_ms(head: &str) -> Option<u64> {
    let target = head.split(' ').nth(1)?;
    target.strip_prefix("/delay/")?.parse().ok()
}

fn cluster(protocol: UpstreamProtocol, max_idle: u32, idle_timeout: Duration) -> ClusterConfig {
    ClusterConfig {
        name: "test".into(),
        protocol,
        endpoints: Vec::new(),
        connect_timeout: Duration::from_secs(5),
        stream_idle_timeout: Duration::from_secs(10),
        pool: PoolConfig {
            max_idle,
            idle_timeout,
            ..PoolConfig::default()
        },
        lb: crate::config::TypedConfig::named("round_robin"),
        retry_budget: Default::default(),
        circuit_breakers: Default::default(),
        protocol_options: crate::config::Section::empty(),
        transport: None,
        extensions: Vec::new(),
    }
}

fn h1_upstream(echo: &PortEcho, max_idle: u32, workers: usize) -> Upstream {
    let cfg = cluster(UpstreamProtocol::Http1, max_idle, Duration::from_secs(1));
    Upstream::new(echo.server.addr, &cfg, None, None, workers)
}

/// Sends `GET path` and reads the whole answer.
async fn get(up: &Upstream, path: &str) -> String {
    let (mut parts, ()) = http::Request::get(path)
        .header(http::header::HOST, "test")
        .body(())
        .expect("request")
        .into_parts();
    let resp = up
        .send(
            &mut parts,
            false,
            Body::empty(),
            crate::bufs::Slab::Responses,
            None,
        )
        .await
        .expect("response");
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

/// The source port of the connection that carried `GET path`.
async fn port(up: &Upstream, path: &str) -> u16 {
    get(up, path).await.parse().expect("a port")
}

/// Concurrent requests answered after 100, 200, ... ms: as many connections, returned
/// to the pool in that order. Their ports, in that order.
async fn burst(up: &Upstream, n: u64) -> Vec<u16> {
    let paths: Vec<String> = (1..=n).map(|i| format!("/delay/{}", i * 100)).collect();
    join_all(paths.iter().map(|p| port(up, p))).await
}

#[tokio::test]
async fn the_most_recently_returned_connection_is_reused() {
    with_timeout(LIMIT, async {
        let echo = PortEcho::start();
        let up = h1_upstream(&echo, 16, 1);
        let ports = burst(&up, 3).await;
        assert_eq!(up.idle_connections(), 3);
        let last = ports[2];
        for _ in 0..5 {
            assert_eq!(port(&up, "/").await, last, "opened in order {ports:?}");
        }
        assert_eq!(echo.open(), 3);
        assert_eq!(up.open.open(), 3);
    })
    .await;
}

#[tokio::test]
async fn a_surplus_expires_while_requests_continue() {
    with_timeout(LIMIT, async {
        let echo = PortEcho::start();
        // An idle timeout of 1 s is one sweep: idle for more than one whole sweep
        // epoch, a connection is closed by the next sweep.
        let up = h1_upstream(&echo, 16, 1);
        let ports = burst(&up, 4).await;
        let hot = ports[3];
        // Not yet idle for a whole epoch: nothing closes.
        up.evict_expired();
        assert_eq!(up.idle_connections(), 4);
        for _ in 0..3 {
            for _ in 0..10 {
                assert_eq!(port(&up, "/").await, hot);
            }
            up.evict_expired();
        }
        assert_eq!(up.idle_connections(), 1);
        assert_eq!(up.open.open(), 1);
        assert!(eventually(LIMIT, || echo.open() == 1).await);
        let mut closed = echo.closed();
        closed.sort_unstable();
        let mut surplus = ports[..3].to_vec();
        surplus.sort_unstable();
        assert_eq!(closed, surplus);
        assert_eq!(port(&up, "/").await, hot);
    })
    .await;
}

#[tokio::test]
async fn connections_idle_for_the_timeout_all_expire() {
    with_timeout(LIMIT, async {
        let echo = PortEcho::start();
        let up = h1_upstream(&echo, 16, 1);
        burst(&up, 2).await;
        up.evict_expired();
        up.evict_expired();
        assert_eq!(up.idle_connections(), 0);
        assert!(eventually(LIMIT, || echo.open() == 0).await);
        // The next request opens a fresh connection.
        port(&up, "/").await;
        assert_eq!(echo.server.connections(), 3);
    })
    .await;
}

#[tokio::test]
async fn a_return_past_max_idle_closes_the_oldest() {
    with_timeout(LIMIT, async {
        let echo = PortEcho::start();
        let up = h1_upstream(&echo, 2, 1);
        let ports = burst(&up, 4).await;
        assert_eq!(up.idle_connections(), 2);
        assert!(eventually(LIMIT, || echo.open() == 2).await);
        assert_eq!(echo.closed(), ports[..2].to_vec());
        assert_eq!(port(&up, "/").await, ports[3]);
    })
    .await;
}

#[tokio::test]
async fn dropping_the_upstream_closes_its_idle_connections() {
    with_timeout(LIMIT, async {
        let echo = PortEcho::start();
        let up = h1_upstream(&echo, 16, 2);
        burst(&up, 3).await;
        drop(up);
        assert!(eventually(LIMIT, || echo.open() == 0).await);
    })
    .await;
}

#[test]
fn the_worker_count_is_the_configured_one_or_the_cores() {
    let runtime = |worker_threads| RuntimeConfig {
        worker_threads,
        ..RuntimeConfig::default()
    };
    assert_eq!(worker_count(&runtime(3)), 3);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(worker_count(&runtime(0)), cores);
}

type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// A thread running a current-thread runtime as server worker `index` does, running
/// the jobs it is given one after the other.
struct Worker {
    jobs: Option<tokio::sync::mpsc::UnboundedSender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    fn start(index: usize) -> Self {
        let (jobs, mut rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
        let thread = std::thread::spawn(move || {
            crate::worker::set_index(index);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("worker runtime");
            rt.block_on(async move {
                while let Some(job) = rx.recv().await {
                    job().await;
                }
            });
        });
        Self {
            jobs: Some(jobs),
            thread: Some(thread),
        }
    }

    /// Runs `f` on this worker's runtime; waits for its result.
    fn run<T, F, Fut>(&self, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        let (done, result) = std::sync::mpsc::channel();
        let job: Job = Box::new(move || {
            Box::pin(async move {
                let _ = done.send(f().await);
            })
        });
        self.jobs
            .as_ref()
            .expect("worker running")
            .send(job)
            .expect("worker running");
        result
            .recv_timeout(LIMIT)
            .expect("the worker's job finished")
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn each_worker_reuses_only_the_connections_it_opened() {
    let echo = PortEcho::start();
    let up = Arc::new(h1_upstream(&echo, 16, 2));
    let workers = [Worker::start(0), Worker::start(1)];
    let on = |w: usize| {
        let up = up.clone();
        workers[w].run(move || async move { port(&up, "/").await })
    };
    let first = on(0);
    assert_eq!(up.idle_connections(), 1);
    // Worker 0's idle connection is not handed to worker 1.
    let second = on(1);
    assert_ne!(first, second);
    assert_eq!(up.idle_connections(), 2);
    for _ in 0..3 {
        assert_eq!(on(0), first);
        assert_eq!(on(1), second);
    }
    assert_eq!(echo.server.connections(), 2);
    // A worker index past the pools shares a pool (index modulo the count).
    let third = Worker::start(2);
    let up2 = up.clone();
    assert_eq!(
        third.run(move || async move { port(&up2, "/").await }),
        first
    );
    drop(workers);
    drop(third);
}

#[test]
fn each_worker_has_its_own_http2_connection() {
    let server = proxy_test_support::Upstream::named("h2");
    let cfg = cluster(UpstreamProtocol::Http2, 16, Duration::from_secs(60));
    let up = Arc::new(Upstream::new(server.addr, &cfg, None, None, 2));
    let workers = [Worker::start(0), Worker::start(1)];
    let on = |w: usize| {
        let up = up.clone();
        workers[w].run(move || async move { get(&up, "/").await })
    };
    for _ in 0..3 {
        assert_eq!(on(0), "h2");
    }
    assert_eq!(server.connections(), 1);
    assert_eq!(up.h2.live_connections(), 1);
    for _ in 0..3 {
        assert_eq!(on(1), "h2");
        assert_eq!(on(0), "h2");
    }
    assert_eq!(server.connections(), 2);
    assert_eq!(up.h2.live_connections(), 2);
    assert_eq!(up.open.open(), 2);
    assert_eq!(server.hits(), 9);
}

#[test]
fn an_http2_connection_idle_for_the_idle_timeout_closes() {
    let server = proxy_test_support::Upstream::named("h2");
    let cfg = cluster(UpstreamProtocol::Http2, 16, Duration::from_millis(200));
    let up = Arc::new(Upstream::new(server.addr, &cfg, None, None, 1));
    let worker = Worker::start(0);
    let on = || {
        let up = up.clone();
        worker.run(move || async move { get(&up, "/").await })
    };
    assert_eq!(on(), "h2");
    assert_eq!(up.h2.live_connections(), 1);
    assert_eq!(up.open.open(), 1);
    // Used within the idle timeout, it stays.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(on(), "h2");
    }
    assert_eq!(server.connections(), 1);
    let open = up.open.clone();
    let closed = worker.run(move || async move { eventually(LIMIT, || open.open() == 0).await });
    assert!(closed, "the idle connection closed");
    assert_eq!(up.h2.live_connections(), 0);
    // The next request opens another.
    assert_eq!(on(), "h2");
    assert_eq!(server.connections(), 2);
}

#[tokio::test]
async fn an_http1_connection_carries_at_most_max_requests_per_connection() {
    with_timeout(LIMIT, async {
        let echo = PortEcho::start();
        let mut cfg = cluster(UpstreamProtocol::Http1, 16, Duration::from_secs(60));
        cfg.pool.max_requests_per_connection = std::num::NonZeroU32::new(3);
        let up = Upstream::new(echo.server.addr, &cfg, None, None, 1);
        let mut ports = Vec::new();
        for _ in 0..7 {
            ports.push(port(&up, "/").await);
        }
        assert!(ports[..3].iter().all(|p| *p == ports[0]), "{ports:?}");
        assert!(ports[3..6].iter().all(|p| *p == ports[3]), "{ports:?}");
        assert_ne!(ports[0], ports[3]);
        assert_ne!(ports[3], ports[6]);
        // The first two closed after their third answer.
        assert!(eventually(LIMIT, || echo.open() == 1).await);
        assert_eq!(up.idle_connections(), 1);
    })
    .await;
}
