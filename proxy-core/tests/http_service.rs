//! `Server::http_service`: a listener's request stack served outside its own
//! connections follows reloads (routes and filters) request by request.

use std::time::Duration;

use http_body_util::BodyExt;
use proxy_core::{Body, ListenerNotRunning, Registry, ServerError};
use proxy_test_support::{timeout::with_timeout, yaml, TestServer, Upstream};
use tower::ServiceExt;

fn config(cluster: &str, a: &Upstream, b: &Upstream) -> String {
    yaml::config(
        &[yaml::listener("web", cluster, &[])],
        &[
            yaml::cluster("a", &[a.addr], &[]),
            yaml::cluster("b", &[b.addr], &[]),
        ],
    )
}

async fn get(service: &proxy_core::BoxHttp) -> (u16, String) {
    let req = http::Request::builder()
        .uri("http://svc.test/")
        .body(Body::empty())
        .expect("request");
    let resp = service.clone().oneshot(req).await.expect("response");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changing_the_route_is_followed_by_the_service() {
    with_timeout(Duration::from_secs(30), async {
        let (a, b) = (Upstream::named("a"), Upstream::named("b"));
        let proxy = TestServer::start(&config("a", &a, &b), Registry::default());
        let service = proxy.server().http_service("web").expect("listener web");
        assert_eq!(get(&service).await, (200, "a".into()));

        proxy.reload(&config("b", &a, &b)).expect("reload");
        // The same service (and a clone made before the reload) now routes to b.
        assert_eq!(get(&service).await, (200, "b".into()));
        assert_eq!((a.hits(), b.hits()), (1, 1));

        // A reload that removes the listener: the service refuses with a typed error.
        proxy
            .reload(&yaml::config(
                &[yaml::listener("api", "a", &[])],
                &[yaml::cluster("a", &[a.addr], &[])],
            ))
            .expect("reload without web");
        let req = http::Request::builder()
            .uri("http://svc.test/")
            .body(Body::empty())
            .expect("request");
        let err = service.clone().oneshot(req).await.expect_err("no listener");
        let err = err
            .downcast_ref::<ListenerNotRunning>()
            .expect("typed error");
        assert_eq!(err.name(), "web");
    })
    .await;
}

#[test]
fn an_unknown_listener_is_refused_naming_it() {
    let up = Upstream::named("a");
    let yaml = config("a", &up, &up);
    let server = proxy_core::Server::new(
        proxy_core::config::Config::from_yaml(&yaml).expect("yaml"),
        Registry::default(),
    )
    .expect("server");
    match server.http_service("api") {
        Err(ServerError::Config(e)) => assert!(e.to_string().contains("\"api\""), "{e}"),
        other => panic!("expected a config error, got {:?}", other.map(|_| ())),
    }
}
