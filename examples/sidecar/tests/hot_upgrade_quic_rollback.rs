//! A hot upgrade of a sidecar with a `quic` section rolled back, then done again,
//! under PyPI's aioquic (a client nobody here wrote). Connection A has a request
//! in flight when a second process takes over (it gets the UDP socket, the first
//! hands off: GOAWAY, draining) and is killed (SIGKILL) within its hand-off window.
//! The first process rolls back and starts HTTP/3 again for the server taken back,
//! on the same UDP socket: a new connection B is served, and A's request in flight
//! completes (its datagrams forwarded to the listener before, which drains). Then
//! a third process takes over from the first: it gets the UDP socket again, B's
//! request in flight completes in the first (forwarded by the third), and a new
//! connection C is served by the third. Skipped loudly without aioquic
//! (`scripts/deps/proxy-quic.sh`).

use crate::common;

use crate::aioquic_support;
use crate::support;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use aioquic_support::{json_lines, Aioquic};
use bytes::Bytes;
use common::*;
use http::Method;
use proxy_test_support::{
    client, hot_upgrade::log_field, pki::Pki, temp::TempDir, upstream::response, with_timeout,
    Upstream,
};
use serde_json::json;
use support::*;
use tokio::{net::TcpStream, sync::watch};

/// How long a test waits for a line in a process's log.
const LOG_WAIT: Duration = Duration::from_secs(20);

const LIMIT: Duration = Duration::from_secs(150);

/// The size of each answer held back until the test releases it.
const LARGE: usize = 256 * 1024;

/// Idle keep-alive connections open at the upgrade.
const IDLE_CONNECTIONS: usize = 10;

/// An answer held back until the test releases it, and how many requests wait
/// for it.
#[derive(Clone)]
struct Held {
    release: Arc<watch::Sender<bool>>,
    waiting: Arc<AtomicUsize>,
}

impl Held {
    fn new() -> Self {
        Self {
            release: Arc::new(watch::channel(false).0),
            waiting: Arc::default(),
        }
    }

    /// Waits (at most 60 s) until released, then answers `LARGE` bytes.
    async fn answer(self) -> http::Response<proxy_test_support::upstream::RespBody> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut released = self.release.subscribe();
        let waited = tokio::time::timeout(Duration::from_secs(60), released.wait_for(|r| *r))
            .await
            .is_ok_and(|r| r.is_ok());
        if waited {
            response(200, vec![b'o'; LARGE])
        } else {
            response(504, "never released")
        }
    }

    /// Waits until a request waits here, or fails with `logs`.
    async fn wait_arrival(&self, logs: impl Fn() -> String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.waiting.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "no request held\n{}", logs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The admin page's `proxy_quic_h3_requests_total` of the process serving `admin`
/// (what it counted plus what it carried in from the processes before it).
async fn h3_requests(admin: std::net::SocketAddr) -> u64 {
    let r = client::request(admin, Method::GET, "/stats/prometheus", &[], Bytes::new())
        .await
        .expect("metrics");
    metric_sum(
        &String::from_utf8_lossy(&r.body),
        &["proxy_quic_h3_requests_total{"],
    ) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_roll_back_http3_serves_new_clients_and_the_next_upgrade_takes_it_over() {
    let Some(aioquic) = Aioquic::find("sidecar QUIC roll-back test") else {
        return;
    };
    let _heavy = heavy_test_lock().await;
    with_timeout(LIMIT, async {
        let (slow1, slow2) = (Held::new(), Held::new());
        let up = Upstream::http_async({
            let (slow1, slow2) = (slow1.clone(), slow2.clone());
            move |seen| {
                let held = match seen.path() {
                    "/slow/1" => Some(slow1.clone()),
                    "/slow/2" => Some(slow2.clone()),
                    _ => None,
                };
                async move {
                    match held {
                        Some(held) => held.answer().await,
                        None => response(200, "ok"),
                    }
                }
            }
        });
        let pki = Pki::new("sidecar-h3-rollback");
        let dir = TempDir::new("hot-upgrade-quic-rollback");
        let (cfg, config, port) = h3_upgrade_config(&dir, up.addr, &pki, "10s", "20s");
        let mut first = start_sidecar("first", &dir, &config, &[]);
        first.wait_ready(cfg.admin).await;

        let args = vec![
            "--port".to_string(),
            port.to_string(),
            "--ca".into(),
            pki.ca_pem.display().to_string(),
            "--dir".into(),
            dir.path().display().to_string(),
        ];
        let client = tokio::spawn({
            let aioquic = aioquic.clone();
            async move {
                aioquic
                    .run("h3_rollback_client.py", args, Duration::from_secs(120))
                    .await
            }
        });
        // Connection A has /slow/1 in flight. Idle HTTP/1.1 keep-alive
        // connections keep the hand-off window open (handed out over its length).
        slow1.wait_arrival(|| first.logs()).await;
        let mut idle = Vec::new();
        for _ in 0..IDLE_CONNECTIONS {
            let mut s = TcpStream::connect(cfg.listen).await.expect("connect");
            assert!(
                matches!(exchange(&mut s, false).await, Exchange::Answer(200, false)),
                "{}",
                first.logs()
            );
            idle.push(s);
        }

        // A second process takes over (the UDP socket too) and is killed in its
        // window: the first rolls back and starts HTTP/3 again on the same socket.
        let second = start_sidecar(
            "second",
            &dir,
            &config,
            &["--upgrade", "--upgrade-window", "4s"],
        );
        second.wait_log("took over", 1, LOG_WAIT).await;
        second
            .wait_log("QUIC sockets taken over sockets=1", 1, LOG_WAIT)
            .await;
        first
            .wait_log("QUIC listener handed off", 1, LOG_WAIT)
            .await;
        // In the middle of the window.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        drop(second);
        first
            .wait_log("rolled back: accepting again", 1, LOG_WAIT)
            .await;
        first
            .wait_log(
                "HTTP/3 started again for the server taken back",
                1,
                LOG_WAIT,
            )
            .await;
        assert!(first.running(), "{}", first.logs());

        // B, a new connection, is served; A's answer comes through.
        std::fs::write(dir.join("rolled-back"), b"").expect("write");
        let _ = slow1.release.send(true);
        slow2.wait_arrival(|| first.logs()).await;
        // A's listener (the one before the roll-back) drained and ended: the
        // listener started again may be handed over now.
        first
            .wait_log("QUIC listener drained after the hand-off", 1, LOG_WAIT)
            .await;

        // The next upgrade hands the UDP socket over again; B's request in flight
        // completes in the first process, its datagrams forwarded by the third.
        let mut third = start_sidecar(
            "third",
            &dir,
            &config,
            &["--upgrade", "--upgrade-window", "300ms"],
        );
        third.wait_log("took over", 1, LOG_WAIT).await;
        let _ = slow2.release.send(true);
        let status = first.wait_exit(Duration::from_secs(30)).await;
        assert!(status.success(), "first exit {status}\n{}", first.logs());
        third.wait_ready(cfg.admin).await;
        let third_logs = third.logs();
        assert!(
            third_logs.contains("QUIC sockets taken over sockets=1"),
            "the third took the UDP socket over\n{third_logs}"
        );
        let first_logs = first.logs();
        assert_eq!(
            first_logs.matches("QUIC listener handed off").count(),
            2,
            "handed off to the second, then (started again) to the third\n{first_logs}"
        );
        let forwarded: Vec<u64> = first_logs
            .lines()
            .filter(|l| l.contains("QUIC listener drained after the hand-off"))
            .filter_map(|l| log_field(l, "drained", "received_forwarded"))
            .filter_map(|n| n.parse().ok())
            .collect();
        assert_eq!(forwarded.len(), 2, "{first_logs}");
        assert!(
            forwarded.iter().all(|n| *n > 0),
            "each listener got its datagrams forwarded: {forwarded:?}\n{first_logs}"
        );

        // C, a new connection, is served by the third (the first has exited).
        let before_c = h3_requests(cfg.admin).await;
        std::fs::write(dir.join("upgraded"), b"").expect("write");
        let out = client.await.expect("client task");
        assert!(
            out.ok(),
            "aioquic client failed: {}\n{}",
            out.text(),
            third.logs()
        );
        let report = json_lines(&out).pop().expect("the client's report");
        eprintln!("HTTP/3 through a roll-back and an upgrade: {report}");
        let whole = json!({"status": 200, "bytes": LARGE});
        let ok = json!({"status": 200, "bytes": 2});
        assert_eq!(report["before"], ok, "{report}");
        assert_eq!(
            report["slow1"], whole,
            "A's request across the roll-back: {report}"
        );
        assert_eq!(report["after_rollback"], ok, "a new connection: {report}");
        assert_eq!(
            report["slow2"], whole,
            "B's request across the upgrade: {report}"
        );
        assert_eq!(report["after_upgrade"], ok, "{report}");
        assert_eq!(report["goaway"], json!({"a": true, "b": true}), "{report}");
        assert_eq!(
            h3_requests(cfg.admin).await,
            before_c + 1,
            "C was served by the third\n{}",
            third.logs()
        );
    })
    .await;
}
