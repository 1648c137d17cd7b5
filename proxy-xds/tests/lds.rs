//! Listeners (LDS) and routes (RDS) over the same ADS stream, driving a real proxy on
//! 127.0.0.1: a pushed listener serves, a route change moves traffic, weighted
//! clusters split, an unsupported HTTP filter is NACKed while the proxy keeps
//! serving, routes arriving after their listener, listeners moved and removed.

use crate::common;

use std::{net::SocketAddr, time::Duration};

use common::{
    cds, http_listener, lds, prefix_route, rds, rds_listener, route_config, router, static_cluster,
    weighted_route, ControlPlane,
};
use envoy_types::pb::envoy::{
    config::cluster::v3::Cluster,
    extensions::filters::network::http_connection_manager::v3::{
        http_connection_manager::RouteSpecifier, HttpFilter,
    },
};
use proxy_core::{config::Config, Registry, Server};
use proxy_test_support::{
    client, eventually, eventually_async, free_addr, ports::any_port, with_timeout, yaml,
    TestServer, Upstream,
};
use proxy_xds::{
    resources::{CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE},
    BackoffConfig, XdsClient, XdsConfig,
};

const LIMIT: Duration = Duration::from_secs(30);

/// A proxy with one static listener `main` (to cluster `app`) that also asks for
/// listeners and routes, and the spawned client.
fn proxy(cp: &ControlPlane) -> (TestServer, tokio::task::JoinHandle<()>) {
    let base = Config::from_yaml(&yaml::config(&[yaml::listener("main", "app", &[])], &[]))
        .expect("base config");
    let mut xds = XdsConfig::new(cp.addr.to_string(), "test-node");
    xds.listeners = true;
    xds.backoff = BackoffConfig {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
    };
    let client = XdsClient::new(xds, base);
    let mut registry = Registry::default();
    proxy_lb::register(&mut registry);
    let server = Server::new(client.initial_config(), registry).expect("initial config");
    let proxy = TestServer::run(server.clone()).expect("proxy starts");
    let task = tokio::spawn(client.run(server));
    (proxy, task)
}

/// The bound address of listener `name`, if it is serving.
fn bound(proxy: &TestServer, name: &str) -> Option<SocketAddr> {
    proxy
        .server()
        .listener_addresses()
        .into_iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, a)| a.parse().ok())
}

/// Reads the stream's opening requests (CDS then LDS) and pushes `clusters`.
async fn open_with(cp: &mut ControlPlane, clusters: &[Cluster]) {
    let first = cp.request().await;
    assert_eq!(first.type_url, CLUSTER_TYPE);
    let second = cp.request().await;
    assert_eq!(second.type_url, LISTENER_TYPE, "LDS is asked for at open");
    assert!(second.resource_names.is_empty(), "LDS is a wildcard");
    cp.push_acked(cds("1", clusters)).await;
}

/// Pushes LDS `version`; expects the RDS subscription `names` first when given,
/// then the ACK.
async fn push_listeners(
    cp: &mut ControlPlane,
    version: &str,
    listeners: &[envoy_types::pb::envoy::config::listener::v3::Listener],
    names: Option<&[&str]>,
) {
    cp.push(lds(version, listeners));
    if let Some(names) = names {
        let sub = cp.request().await;
        assert_eq!(
            sub.type_url, ROUTE_TYPE,
            "RDS subscription before the LDS ACK"
        );
        assert_eq!(sub.resource_names, names);
    }
    let ack = cp.request_of(LISTENER_TYPE).await;
    assert!(ack.error_detail.is_none(), "{:?}", ack.error_detail);
    assert_eq!(ack.version_info, version);
}

async fn push_routes(
    cp: &mut ControlPlane,
    version: &str,
    configs: &[envoy_types::pb::envoy::config::route::v3::RouteConfiguration],
) {
    cp.push_acked(rds(version, configs)).await;
}

/// GETs `path` on `addr` until the body is `want`.
async fn answers(addr: SocketAddr, path: &str, want: &str) -> bool {
    eventually_async(LIMIT, || async move {
        client::get(addr, path, &[]).await.text() == want
    })
    .await
}

#[tokio::test]
async fn a_listener_and_its_routes_over_ads_reach_the_upstream_routes_after_listener() {
    with_timeout(LIMIT * 2, async {
        let a = Upstream::named("a");
        let mut cp = ControlPlane::start().await;
        let (proxy, task) = proxy(&cp);
        open_with(&mut cp, &[static_cluster("app", &[a.addr])]).await;
        push_listeners(
            &mut cp,
            "1",
            &[rds_listener("web", any_port(), "web-routes")],
            Some(&["web-routes"]),
        )
        .await;
        // The routes have not arrived: the listener waits for them.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(bound(&proxy, "web"), None, "no listener before its routes");
        push_routes(
            &mut cp,
            "1",
            &[route_config("web-routes", vec![prefix_route("/", "app")])],
        )
        .await;
        assert!(eventually(LIMIT, || bound(&proxy, "web").is_some()).await);
        let web = proxy.addr("web");
        assert!(answers(web, "/", "a").await);
        // The static listener is untouched.
        assert_eq!(client::get(proxy.addr("main"), "/", &[]).await.text(), "a");
        task.abort();
    })
    .await;
}

#[tokio::test]
async fn a_route_change_moves_traffic_on_the_next_request() {
    with_timeout(LIMIT * 2, async {
        let (a, b) = (Upstream::named("a"), Upstream::named("b"));
        let mut cp = ControlPlane::start().await;
        let (proxy, task) = proxy(&cp);
        open_with(
            &mut cp,
            &[
                static_cluster("app", &[a.addr]),
                static_cluster("other", &[b.addr]),
            ],
        )
        .await;
        push_listeners(
            &mut cp,
            "1",
            &[rds_listener("web", any_port(), "r")],
            Some(&["r"]),
        )
        .await;
        push_routes(
            &mut cp,
            "1",
            &[route_config("r", vec![prefix_route("/", "app")])],
        )
        .await;
        assert!(eventually(LIMIT, || bound(&proxy, "web").is_some()).await);
        let web = proxy.addr("web");
        assert!(answers(web, "/x/1", "a").await);
        let routes = vec![prefix_route("/x", "other"), prefix_route("/", "app")];
        push_routes(&mut cp, "2", &[route_config("r", routes)]).await;
        // Applied before the ACK: the very next request takes the new route.
        assert_eq!(client::get(web, "/x/1", &[]).await.text(), "b");
        assert_eq!(client::get(web, "/y", &[]).await.text(), "a");
        // A route naming a cluster nobody defined answers 503.
        push_routes(
            &mut cp,
            "3",
            &[route_config("r", vec![prefix_route("/", "ghost")])],
        )
        .await;
        assert_eq!(client::get(web, "/", &[]).await.status, 503);
        task.abort();
    })
    .await;
}

#[tokio::test]
async fn weighted_clusters_split_within_binomial_bounds() {
    with_timeout(LIMIT * 2, async {
        let (a, b) = (Upstream::named("a"), Upstream::named("b"));
        let mut cp = ControlPlane::start().await;
        let (proxy, task) = proxy(&cp);
        open_with(
            &mut cp,
            &[
                static_cluster("app", &[a.addr]),
                static_cluster("other", &[b.addr]),
            ],
        )
        .await;
        let inline = RouteSpecifier::RouteConfig(route_config(
            "inline",
            vec![weighted_route(&[("app", 80), ("other", 20), ("unused", 0)])],
        ));
        push_listeners(
            &mut cp,
            "1",
            &[http_listener("web", any_port(), inline, vec![router()])],
            None,
        )
        .await;
        assert!(eventually(LIMIT, || bound(&proxy, "web").is_some()).await);
        let web = proxy.addr("web");
        let n = 400;
        let mut to_a = 0;
        for _ in 0..n {
            match client::get(web, "/", &[]).await.text().as_str() {
                "a" => to_a += 1,
                "b" => {}
                other => panic!("unexpected answer {other:?}"),
            }
        }
        // Binomial(400, 0.8): mean 320, standard deviation 8; 5 deviations either side.
        assert!((280..=360).contains(&to_a), "{to_a} of {n} to a");
        task.abort();
    })
    .await;
}

#[tokio::test]
async fn an_unsupported_http_filter_is_nacked_by_name_and_the_proxy_keeps_serving() {
    with_timeout(LIMIT * 2, async {
        let a = Upstream::named("a");
        let mut cp = ControlPlane::start().await;
        let (proxy, task) = proxy(&cp);
        open_with(&mut cp, &[static_cluster("app", &[a.addr])]).await;
        push_listeners(
            &mut cp,
            "1",
            &[rds_listener("web", any_port(), "r")],
            Some(&["r"]),
        )
        .await;
        push_routes(
            &mut cp,
            "1",
            &[route_config("r", vec![prefix_route("/", "app")])],
        )
        .await;
        assert!(eventually(LIMIT, || bound(&proxy, "web").is_some()).await);
        let web = proxy.addr("web");
        assert!(answers(web, "/", "a").await);

        let cors = HttpFilter {
            name: "envoy.filters.http.cors".into(),
            ..HttpFilter::default()
        };
        let bad = http_listener(
            "web",
            any_port(),
            RouteSpecifier::RouteConfig(route_config("r", vec![prefix_route("/", "app")])),
            vec![cors, router()],
        );
        let (nack, detail) = cp.push_nacked(lds("2", &[bad])).await;
        assert_eq!(
            nack.version_info, "1",
            "a NACK carries the last accepted version"
        );
        assert!(
            detail.starts_with(
                "listener \"web\": filter_chains[0].filters[0].typed_config.http_filters[0].typed_config"
            ) && detail.contains("envoy.filters.http.cors"),
            "{detail}"
        );
        assert_eq!(client::get(web, "/", &[]).await.text(), "a");
        assert_eq!(bound(&proxy, "web"), Some(web));
        task.abort();
    })
    .await;
}

#[tokio::test]
async fn a_moved_listener_serves_on_its_new_address_and_a_removed_one_stops_accepting() {
    with_timeout(LIMIT * 2, async {
        let a = Upstream::named("a");
        let mut cp = ControlPlane::start().await;
        let (proxy, task) = proxy(&cp);
        open_with(&mut cp, &[static_cluster("app", &[a.addr])]).await;
        push_listeners(
            &mut cp,
            "1",
            &[rds_listener("web", any_port(), "r")],
            Some(&["r"]),
        )
        .await;
        push_routes(
            &mut cp,
            "1",
            &[route_config("r", vec![prefix_route("/", "app")])],
        )
        .await;
        assert!(eventually(LIMIT, || bound(&proxy, "web").is_some()).await);
        let old = proxy.addr("web");
        assert!(answers(old, "/", "a").await);

        let moved = free_addr();
        push_listeners(&mut cp, "2", &[rds_listener("web", moved, "r")], None).await;
        assert!(answers(moved, "/", "a").await);
        assert_eq!(bound(&proxy, "web"), Some(moved));
        assert!(refuses(old).await, "the old address stops accepting");

        push_listeners(&mut cp, "3", &[], Some(&[])).await;
        assert!(eventually(LIMIT, || bound(&proxy, "web").is_none()).await);
        assert!(refuses(moved).await, "a removed listener stops accepting");
        assert_eq!(client::get(proxy.addr("main"), "/", &[]).await.text(), "a");
        task.abort();
    })
    .await;
}

/// Whether connecting to `addr` is refused (soon).
async fn refuses(addr: SocketAddr) -> bool {
    eventually_async(LIMIT, || async move {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await
}

#[tokio::test]
async fn a_listener_waiting_for_new_routes_keeps_serving_its_old_ones() {
    with_timeout(LIMIT * 2, async {
        let (a, b) = (Upstream::named("a"), Upstream::named("b"));
        let mut cp = ControlPlane::start().await;
        let (proxy, task) = proxy(&cp);
        open_with(
            &mut cp,
            &[
                static_cluster("app", &[a.addr]),
                static_cluster("other", &[b.addr]),
            ],
        )
        .await;
        push_listeners(
            &mut cp,
            "1",
            &[rds_listener("web", any_port(), "r1")],
            Some(&["r1"]),
        )
        .await;
        push_routes(
            &mut cp,
            "1",
            &[route_config("r1", vec![prefix_route("/", "app")])],
        )
        .await;
        assert!(eventually(LIMIT, || bound(&proxy, "web").is_some()).await);
        let web = proxy.addr("web");
        assert!(answers(web, "/", "a").await);

        // The listener now names r2, not sent yet: r1's routes keep serving.
        push_listeners(
            &mut cp,
            "2",
            &[rds_listener("web", any_port(), "r2")],
            Some(&["r2"]),
        )
        .await;
        assert_eq!(client::get(web, "/", &[]).await.text(), "a");
        push_routes(
            &mut cp,
            "2",
            &[route_config("r2", vec![prefix_route("/", "other")])],
        )
        .await;
        assert_eq!(client::get(web, "/", &[]).await.text(), "b");
        task.abort();
    })
    .await;
}
