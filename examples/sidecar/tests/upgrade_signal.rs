//! `SIGUSR2` to a sidecar serving upgrades (`--upgrade-socket`) starts the new binary
//! itself, nginx-style: its own executable path and arguments plus `--upgrade`, a
//! detached child that takes the listeners over; the old process drains and exits 0,
//! and a keep-alive client in the middle of a request stream keeps its connection
//! and sees no error. A new binary that fails (here: a config it refuses) leaves the
//! old process serving, and the next `SIGUSR2` upgrades.

use crate::common;

use std::{path::PathBuf, time::Duration};

use common::*;
use http::StatusCode;
use proxy_test_support::{
    hot_upgrade::{ProxyProcess, RequestStream},
    temp::TempDir,
    with_timeout, Upstream,
};

/// A sidecar `old` serving upgrades on `DIR/upgrade.sock`, ready, in front of an
/// echo upstream, with a request stream on one keep-alive connection.
struct Serving {
    _up: Upstream,
    cfg: ConfigBuilder,
    dir: TempDir,
    config: PathBuf,
    socket: PathBuf,
    old: ProxyProcess,
    stream: RequestStream,
}

async fn serving(tag: &str) -> Serving {
    let up = Upstream::echo("echo");
    let mut cfg = ConfigBuilder::new()
        .routes(vec![route("r", "/", "c", "")])
        .cluster(cluster("c", up.addr, ""));
    cfg.top_extra = "runtime:\n  worker_threads: 1\n  drain_timeout: 5s\n".into();
    let dir = TempDir::new(tag);
    let config = dir.join("config.yaml");
    std::fs::write(&config, cfg.yaml()).expect("config");
    let socket = dir.join("upgrade.sock");
    let args = [
        "--config",
        config.to_str().expect("utf-8 path"),
        "--upgrade-socket",
        socket.to_str().expect("utf-8 path"),
    ];
    let mut old = ProxyProcess::start(SIDECAR, "old", dir.path(), &args);
    old.wait_ready(cfg.admin).await;
    let stream = RequestStream::start(
        cfg.listen,
        "/hot",
        &[],
        StatusCode::OK,
        Duration::from_millis(5),
    );
    Serving {
        _up: up,
        cfg,
        dir,
        config,
        socket,
        old,
        stream,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr2_starts_the_new_binary_which_takes_over() {
    with_timeout(Duration::from_secs(60), async {
        // `_up` and `_dir` live to the end: the upstream and the directory.
        let Serving {
            _up,
            dir: _dir,
            socket,
            mut old,
            stream,
            ..
        } = serving("upgrade-signal").await;
        assert!(
            stream.wait_more(20, Duration::from_secs(10)).await,
            "{}",
            old.logs()
        );
        old.signal("USR2");
        let new = old.started_on_usr2(0).await;
        assert_ne!(new.0, old.pid());
        let status = old.wait_exit(Duration::from_secs(20)).await;
        assert!(status.success(), "old exit {status}\n{}", old.logs());
        // The child logs to the same stderr: it took the listeners over.
        let logs = old.logs();
        assert!(logs.contains("listening on handed-in sockets"), "{logs}");
        assert!(logs.contains("took over"), "{logs}");
        assert!(new.running(), "the new process exited\n{logs}");
        // The stream goes on, against the new process alone now.
        assert!(
            stream.wait_more(50, Duration::from_secs(10)).await,
            "{logs}"
        );
        let report = stream.stop().await;
        assert!(report.failures.is_empty(), "{:?}\n{logs}", report.failures);
        assert_eq!(
            report.connects, 1,
            "the keep-alive connection was reopened\n{logs}"
        );
        assert!(report.ok > 70, "{report:?}");
        // The new process serves upgrades on the same path.
        assert!(socket.exists(), "{logs}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_new_binary_leaves_the_old_one_serving() {
    with_timeout(Duration::from_secs(60), async {
        let Serving {
            _up,
            dir: _dir,
            cfg,
            config,
            mut old,
            stream,
            ..
        } = serving("upgrade-signal-fail").await;

        // The new binary cannot load the config: it exits 1 before taking anything.
        std::fs::write(&config, "listeners: [").expect("config");
        old.signal("USR2");
        let failed = old.started_on_usr2(0).await;
        let gone = proxy_test_support::eventually(Duration::from_secs(10), || {
            old.logs().contains("the upgrade's new process failed")
        })
        .await;
        assert!(gone, "{}", old.logs());
        assert!(!failed.running());
        assert!(old.running(), "{}", old.logs());
        assert!(
            stream.wait_more(20, Duration::from_secs(10)).await,
            "{}",
            old.logs()
        );

        // Fixed: the next SIGUSR2 upgrades.
        std::fs::write(&config, cfg.yaml()).expect("config");
        let seen = old.logs().len();
        old.signal("USR2");
        let new = old.started_on_usr2(seen).await;
        assert_ne!(new.0, failed.0);
        let status = old.wait_exit(Duration::from_secs(20)).await;
        assert!(status.success(), "old exit {status}\n{}", old.logs());
        assert!(
            stream.wait_more(20, Duration::from_secs(10)).await,
            "{}",
            old.logs()
        );
        let report = stream.stop().await;
        assert!(
            report.failures.is_empty(),
            "{:?}\n{}",
            report.failures,
            old.logs()
        );
        assert_eq!(report.connects, 1, "{}", old.logs());
    })
    .await;
}
