//! Circuit breakers on real sockets: requests over a cluster's `max_requests` fail at
//! once with 503 while the others are served, and the admin counter shows them;
//! retries over `max_retries` are not attempted.

use std::{sync::Arc, time::Duration};

use proxy_core::Registry;
use proxy_test_support::{
    client, eventually::eventually, ports::free_addr, prometheus::sample, server::TestServer,
    timeout::with_timeout, upstream::response, yaml, Upstream,
};
use tokio::sync::Semaphore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_max_requests_get_503_and_are_counted() {
    with_timeout(Duration::from_secs(60), async {
        // A slow upstream: each request waits for a permit the test hands out.
        let gate = Arc::new(Semaphore::new(0));
        let held = gate.clone();
        let up = Upstream::http_async(move |_| {
            let held = held.clone();
            async move {
                let _pass = held.acquire().await;
                response(200, "slow")
            }
        });
        let admin = free_addr();
        let cfg = format!(
            "admin: {{ address: {admin} }}\n{}",
            yaml::config(
                &[yaml::listener("web", "app", &[])],
                &[yaml::cluster(
                    "app",
                    &[up.addr],
                    &["circuit_breakers: {max_requests: 3}"]
                )],
            )
        );
        let server = TestServer::start(&cfg, Registry::default());
        let addr = server.addr("web");
        let first: Vec<_> = (0..3)
            .map(|i| tokio::spawn(async move { client::get(addr, &format!("/{i}"), &[]).await }))
            .collect();
        assert!(
            eventually(Duration::from_secs(10), || up.hits() == 3).await,
            "the first three requests reach the upstream"
        );
        // The budget is full: these fail at once, without reaching the upstream.
        let over: Vec<_> = (0..5)
            .map(|_| tokio::spawn(async move { client::get(addr, "/over", &[]).await }))
            .collect();
        for r in over {
            let r = r.await.expect("request task");
            assert_eq!(r.status, 503);
            assert_eq!(r.header("x-proxy-error"), Some("overflow"));
            assert_eq!(r.header("x-proxy-error-detail"), Some("max_requests"));
        }
        assert_eq!(up.hits(), 3);
        gate.add_permits(100);
        for r in first {
            let r = r.await.expect("request task");
            assert_eq!(r.status, 200);
            assert_eq!(r.text(), "slow");
        }
        let (_, metrics) = server.admin_get("/stats/prometheus").await;
        let series = |m: &str| {
            sample(
                &metrics,
                &format!(
                    "proxy_cluster_circuit_breaker_{m}{{cluster=\"app\",limit=\"max_requests\"}}"
                ),
            )
        };
        assert_eq!(series("overflow_total"), Some(5.0), "{metrics}");
        assert_eq!(series("limit"), Some(3.0));
        assert_eq!(series("in_use"), Some(0.0));
        // Places came back: a new request is served.
        let r = client::get(addr, "/after", &[]).await;
        assert_eq!(r.status, 200);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_over_max_retries_are_not_attempted() {
    with_timeout(Duration::from_secs(60), async {
        let up = Upstream::http(|_| response(503, "down"));
        let cluster = |breakers: &str| {
            format!(
                "  - name: app\n    endpoints: [\"{}\"]\n{breakers}",
                up.addr
            )
        };
        let doc = |breakers: &str| {
            format!(
                r#"runtime: {{ worker_threads: 1 }}
listeners:
  - name: web
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - name: r
            match: {{ path: {{ prefix: "/" }} }}
            cluster: app
            retry: {{ attempts: 2, retry_on: ["5xx"] }}
clusters:
{}"#,
                cluster(breakers)
            )
        };
        // Without a retry budget in the breakers, the route retries twice.
        let server = TestServer::start(&doc(""), Registry::default());
        let r = client::get(server.addr("web"), "/", &[]).await;
        assert_eq!(r.status, 503);
        assert_eq!(up.hits(), 3);
        // With `max_retries: 0`, no retry is attempted: one request, one attempt.
        server
            .reload(&doc("    circuit_breakers: {max_retries: 0}\n"))
            .expect("reload");
        let r = client::get(server.addr("web"), "/", &[]).await;
        assert_eq!(r.status, 503);
        assert_eq!(r.text(), "down");
        assert_eq!(up.hits(), 4);
    })
    .await;
}
