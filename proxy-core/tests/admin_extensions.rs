//! The admin endpoint's extension hooks: a page added with `Server::with_admin_page`
//! is served on its path (built-in paths unchanged, the content type as given), and
//! `Server::with_metrics` appends its series to each scrape.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use proxy_core::{config::Config, Registry, Server};
use proxy_test_support::{server::TestServer, timeout::with_timeout, upstream::Upstream, yaml};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_pages_and_metrics_are_served() {
    with_timeout(Duration::from_secs(30), async {
        let up = Upstream::named("up");
        let admin = proxy_test_support::ports::free_addr();
        let cfg = format!(
            "admin: {{ address: {admin} }}\n{}",
            yaml::config(
                &[yaml::listener("web", "app", &[])],
                &[yaml::cluster("app", &[up.addr], &[])],
            )
        );
        let scrapes = Arc::new(AtomicU64::new(0));
        let counted = scrapes.clone();
        let server = Server::new(
            Config::from_yaml(&cfg).expect("config"),
            Registry::default(),
        )
        .expect("server")
        .with_admin_page(
            "/hello",
            Arc::new(|_: &Server| ("text/plain".into(), "first\n".into())),
        )
        .with_admin_page(
            "/hello",
            Arc::new(|s: &Server| {
                let listeners = s.snapshot().config.listeners.len();
                (
                    "application/json".into(),
                    format!("{{\"listeners\":{listeners}}}"),
                )
            }),
        )
        .with_metrics(Arc::new(move |out: &mut String| {
            let n = counted.fetch_add(1, Ordering::Relaxed) + 1;
            out.push_str(&format!(
                "# TYPE my_scrapes_total counter\nmy_scrapes_total {n}\n"
            ));
        }));
        let server = TestServer::run(server).expect("start");

        let (status, body) = server.admin_get("/hello").await;
        assert_eq!((status.as_u16(), body.as_str()), (200, "{\"listeners\":1}"));
        let (status, _) = server.admin_get("/nothing").await;
        assert_eq!(status.as_u16(), 404);
        // Built-in pages keep their meaning.
        let (status, ready) = server.admin_get("/ready").await;
        assert_eq!((status.as_u16(), ready.as_str()), (200, "ready\n"));

        let (_, text) = server.admin_get("/stats/prometheus").await;
        assert!(text.contains("proxy_listener_"), "{text}");
        assert!(text.ends_with("my_scrapes_total 1\n"), "{text}");
        let (_, text) = server.admin_get("/stats/prometheus").await;
        assert!(text.contains("my_scrapes_total 2\n"), "{text}");
    })
    .await;
}
