//! The open-file limit: started from a shell whose soft limit is low, the sidecar
//! raises it to the hard limit (`runtime.raise_open_files_limit`, on by default) and
//! holds more proxied connections at once than the shell's limit would allow.

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Method, StatusCode};
use proxy_test_support::{client, eventually_async, with_timeout, Upstream};

/// The soft limit the shell sets before it starts the sidecar.
const SHELL_LIMIT: u64 = 256;

/// The soft and hard "Max open files" of process `pid`, from `/proc/PID/limits`.
fn open_files_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a 'Max open files' line");
    let mut fields = line["Max open files".len()..].split_whitespace();
    let soft = fields.next().expect("soft limit").to_string();
    let hard = fields.next().expect("hard limit").to_string();
    (soft, hard)
}

/// The sidecar in front of `up`, with `runtime` (YAML, may be empty) at the top of its
/// config, started from a shell whose soft limit is [`SHELL_LIMIT`].
async fn start_under_shell_limit(up: &Upstream, runtime: &str) -> (Sidecar, ConfigBuilder) {
    let mut cfg = ConfigBuilder::new()
        .routes(vec![route("r", "/", "c", "")])
        .cluster(cluster("c", up.addr, ""));
    cfg.top_extra = runtime.into();
    let shell = format!("ulimit -Sn {SHELL_LIMIT}");
    let sc = Sidecar::start_in_shell(&cfg.yaml(), cfg.admin, &shell).await;
    (sc, cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soft_limit_is_raised_and_more_connections_than_it_allowed_are_served() {
    with_timeout(Duration::from_secs(60), async {
        // This process holds both ends of every connection below.
        proxy_core::raise_open_files_limit().expect("raise the test's own limit");
        let up = Upstream::echo("echo");
        let (sc, cfg) = start_under_shell_limit(&up, "").await;
        let (soft, hard) = open_files_limits(sc.pid());
        assert_eq!(soft, hard, "the soft limit is raised to the hard one");
        let hard: u64 = hard.parse().unwrap_or(u64::MAX);
        // Each proxied request held at the upstream keeps a client and an upstream
        // socket open in the sidecar: this many need more files than the shell's limit.
        let held = (SHELL_LIMIT as usize * 3 / 4).min((hard as usize).saturating_sub(64) / 2);
        if (held as u64) * 2 <= SHELL_LIMIT {
            eprintln!("hard limit {hard}: too low to load past the shell's limit");
            return;
        }
        let listen = cfg.listen;
        let requests: Vec<_> = (0..held)
            .map(|_| {
                tokio::spawn(async move {
                    client::request(
                        listen,
                        Method::GET,
                        "/held",
                        &[("x-echo-delay-ms", "8000")],
                        Bytes::new(),
                    )
                    .await
                })
            })
            .collect();
        // Every request reaches the upstream while the first are still held there:
        // none could have been answered yet to free its files for another.
        let all_held = eventually_async(Duration::from_secs(6), || async {
            up.hits() >= held as u64
        })
        .await;
        assert!(all_held, "{} of {held} requests held at once", up.hits());
        for r in requests {
            let r = r.await.expect("task").expect("answered");
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_is_left_alone_when_the_config_says_so() {
    with_timeout(Duration::from_secs(30), async {
        let up = Upstream::echo("echo");
        let (sc, _) =
            start_under_shell_limit(&up, "runtime:\n  raise_open_files_limit: false\n").await;
        let (soft, _) = open_files_limits(sc.pid());
        assert_eq!(soft, SHELL_LIMIT.to_string());
    })
    .await;
}
