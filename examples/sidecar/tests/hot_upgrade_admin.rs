//! The admin endpoint moves with a hot upgrade: once the new process has taken the
//! sockets over, every admin request is answered by it, even while the old process
//! still drains a request in flight (the old process stops accepting on the shared
//! admin socket at the hand-off; a drain on SIGTERM keeps answering `/ready` 503).

use crate::common;
use crate::support;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use common::*;
use proxy_test_support::{client, temp::TempDir, upstream::response, with_timeout, Upstream};
use support::*;
use tokio::sync::Semaphore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_hand_off_the_new_process_answers_every_admin_request() {
    with_timeout(Duration::from_secs(60), async {
        let _heavy = heavy_test_lock().await;
        // `/held` waits for the gate: the old process drains it after the hand-off.
        let gate = Arc::new(Semaphore::new(0));
        let held = gate.clone();
        let up = Upstream::http_async(move |req| {
            let held = held.clone();
            async move {
                if req.uri.path() == "/held" {
                    let _pass = held.acquire().await;
                }
                response(200, "ok")
            }
        });
        let mut cfg = ConfigBuilder::new()
            .routes(vec![route("r", "/", "c", "")])
            .cluster(cluster("c", up.addr, ""));
        cfg.top_extra = "runtime:\n  drain_timeout: 30s\n".into();
        let dir = TempDir::new("hot-upgrade-admin");
        let config = dir.join("config.yaml");
        std::fs::write(&config, cfg.yaml()).expect("config");
        let mut first = start_sidecar("first", &dir, &config, &[]);
        first.wait_ready(cfg.admin).await;

        let listen = cfg.listen;
        let in_flight = tokio::spawn(async move { client::get(listen, "/held", &[]).await });
        let deadline = Instant::now() + Duration::from_secs(10);
        while up.hits() == 0 {
            assert!(Instant::now() < deadline, "{}", first.logs());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        let second = start_sidecar("second", &dir, &config, &["--upgrade"]);
        first
            .wait_log("handed the listeners over", 1, Duration::from_secs(20))
            .await;
        second
            .wait_log("took over", 1, Duration::from_secs(20))
            .await;
        // The old process drains `/held`, and answers no admin request: a draining
        // server's `/ready` is 503, the new one's 200.
        assert!(first.running(), "{}", first.logs());
        for i in 0..40 {
            let r = client::get(cfg.admin, "/ready", &[]).await;
            assert_eq!(
                r.status,
                200,
                "admin request {i} answered by the draining process\n{}",
                first.logs()
            );
        }
        assert!(
            first.running(),
            "the old process still drains\n{}",
            first.logs()
        );

        gate.add_permits(1);
        let r = in_flight.await.expect("request task");
        assert_eq!(r.status, 200);
        let status = first.wait_exit(Duration::from_secs(20)).await;
        assert!(status.success(), "{}", first.logs());
        drop(second);
    })
    .await;
}
