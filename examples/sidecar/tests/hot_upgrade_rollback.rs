//! Roll-back of a hot upgrade after `ready`: the new process is killed (SIGKILL) in
//! the middle of its hand-off window. The old process, which stopped accepting at
//! `ready`, notices (its end of the upgrade socket closes), takes its listening
//! sockets back and accepts again, and keeps serving the connections it had not
//! handed over yet instead of draining them; the connections the dead process had
//! taken are lost with it. Then the next upgrade works as usual.

use crate::common;
use crate::support;

use std::time::{Duration, Instant};

use common::*;
use proxy_test_support::{temp::TempDir, with_timeout, Upstream};
use support::*;
use tokio::net::TcpStream;

/// How long a test waits for a line in a process's log.
const LOG_WAIT: Duration = Duration::from_secs(10);

/// Idle keep-alive connections open at the upgrade.
const CONNECTIONS: usize = 20;

/// How many of `conns` answer a request with 200 on the same socket; the others are
/// dropped from the list.
async fn served(conns: &mut Vec<TcpStream>) -> usize {
    let mut kept = Vec::new();
    for mut s in conns.drain(..) {
        if let Exchange::Answer(200, false) = exchange(&mut s, false).await {
            kept.push(s);
        }
    }
    *conns = kept;
    conns.len()
}

/// A request on a new connection is answered 200.
async fn new_connection_served(addr: std::net::SocketAddr) -> bool {
    match TcpStream::connect(addr).await {
        Ok(mut s) => matches!(exchange(&mut s, true).await, Exchange::Answer(200, _)),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_process_killed_in_the_window_rolls_back_to_the_old_one() {
    with_timeout(Duration::from_secs(60), async {
        let _heavy = heavy_test_lock().await;
        let up = Upstream::echo("echo");
        let mut cfg = ConfigBuilder::new()
            .routes(vec![route("r", "/", "c", "")])
            .cluster(cluster("c", up.addr, ""));
        cfg.top_extra = "runtime:\n  worker_threads: 2\n  drain_timeout: 10s\n".into();
        let dir = TempDir::new("hot-upgrade-rollback");
        let config = dir.join("config.yaml");
        std::fs::write(&config, cfg.yaml()).expect("config");
        let mut old = start_sidecar("first", &dir, &config, &[]);
        old.wait_ready(cfg.admin).await;

        let mut conns = Vec::new();
        for _ in 0..CONNECTIONS {
            conns.push(TcpStream::connect(cfg.listen).await.expect("connect"));
        }
        assert_eq!(served(&mut conns).await, CONNECTIONS, "{}", old.logs());

        // A new process that takes over, with a 4 s window, killed in its middle.
        let new = start_sidecar(
            "second",
            &dir,
            &config,
            &["--upgrade", "--upgrade-window", "4s"],
        );
        new.wait_log("took over", 1, LOG_WAIT).await;
        // In the middle of the window: about a third of the connections went over.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let killed_at = Instant::now();
        drop(new);
        old.wait_log("rolled back: accepting again", 1, LOG_WAIT)
            .await;
        assert!(old.running(), "{}", old.logs());
        // The old process accepts again, within the window.
        assert!(
            new_connection_served(cfg.listen).await,
            "a new connection after the roll-back\n{}",
            old.logs()
        );
        assert!(killed_at.elapsed() < Duration::from_secs(3));

        // Once the old server drained (the window is over), every connection it had
        // not handed to the dead process is served on; those it had are gone.
        old.wait_log("handed the idle connections over", 1, LOG_WAIT)
            .await;
        let logs = old.logs();
        let (handed_to_dead, kept) = (handed_connections(&logs), handed(&logs, "kept"));
        assert!(logs.contains("rolled_back=true"), "{logs}");
        assert_eq!(
            handed_to_dead + kept,
            CONNECTIONS as u64,
            "every connection went to the dead process or stayed\n{logs}"
        );
        // Some went to the dead process before it died, the rest stayed (each
        // connection's moment is drawn evenly over the window).
        assert!(
            handed_to_dead > 0 && kept > 0,
            "{handed_to_dead} handed, {kept} kept\n{logs}"
        );
        assert_eq!(
            served(&mut conns).await as u64,
            kept,
            "the connections kept are served\n{}",
            old.logs()
        );
        assert!(old.running(), "{}", old.logs());
        assert!(new_connection_served(cfg.listen).await);

        // The next upgrade works, and the connections kept go over to it.
        let (mut third, logs) = take_over("third", &mut old, &dir, &config, "300ms").await;
        third.wait_ready(cfg.admin).await;
        // Its second hand-over, by the server taken back.
        let second = logs.rsplit("rolled back: this process serves on").next();
        assert_eq!(second.map(handed_connections), Some(kept), "{logs}");
        assert_eq!(served(&mut conns).await as u64, kept, "{}", third.logs());
        assert!(new_connection_served(cfg.listen).await);
        eprintln!(
            "roll-back: {handed_to_dead} connections lost with the killed process, {kept} \
             kept and served on, then handed to the next process"
        );
    })
    .await;
}
