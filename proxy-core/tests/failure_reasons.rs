//! A local reply says why: a connect failure answers 503 with `x-proxy-error:
//! connect_failure`, the finer `x-proxy-error-detail` and the cause in the body.

use std::time::Duration;

use proxy_core::Registry;
use proxy_test_support::{client, closed_port, server::TestServer, timeout::with_timeout, yaml};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_say_why() {
    with_timeout(Duration::from_secs(60), async {
        let closed = closed_port();
        let cfg = yaml::config(
            &[yaml::listener("web", "app", &[])],
            &[yaml::cluster("app", &[closed], &[])],
        );
        let server = TestServer::start(&cfg, Registry::default());
        let resp = client::get(server.addr("web"), "/", &[]).await;
        assert_eq!(resp.status, 503);
        assert_eq!(resp.header("x-proxy-error"), Some("connect_failure"));
        assert_eq!(
            resp.header("x-proxy-error-detail"),
            Some("connection_refused")
        );
        let text = resp.text();
        assert!(
            text.contains(&closed.to_string()) && text.to_lowercase().contains("refused"),
            "{text}"
        );
    })
    .await;
}
