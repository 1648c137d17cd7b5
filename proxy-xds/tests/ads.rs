//! The ADS client against an in-process control plane, driving a real proxy on
//! 127.0.0.1: clusters and endpoints pushed over ADS carry traffic, bad resources are
//! NACKed while the last good config keeps serving, the client reconnects.

use crate::common;

use std::time::Duration;

use common::{cds, cla, eds, eds_cluster, response, ControlPlane};
use envoy_types::pb::{
    envoy::config::cluster::v3::{
        cluster::{LbConfig, LbPolicy, LeastRequestLbConfig},
        OutlierDetection,
    },
    google::protobuf::{Any, UInt32Value},
};
use proxy_core::{config::Config, Registry, Server};
use proxy_test_support::{client, eventually_async, with_timeout, yaml, TestServer, Upstream};
use proxy_xds::{
    resources::{CLUSTER_TYPE, ENDPOINT_TYPE},
    BackoffConfig, XdsClient, XdsConfig,
};

const LIMIT: Duration = Duration::from_secs(30);

/// A proxy whose listener `main` routes everything to cluster `app`, which only the
/// control plane at `cp` defines, and the spawned client.
fn proxy(cp: &ControlPlane) -> (TestServer, tokio::task::JoinHandle<()>) {
    let base = Config::from_yaml(&yaml::config(&[yaml::listener("main", "app", &[])], &[]))
        .expect("base config");
    let mut xds = XdsConfig::new(cp.addr.to_string(), "test-node");
    xds.node.cluster = "test-cluster".into();
    xds.backoff = BackoffConfig {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
    };
    xds.connect_timeout = Duration::from_secs(1);
    let client = XdsClient::new(xds, base);
    let mut registry = Registry::default();
    proxy_lb::register(&mut registry);
    let server = Server::new(client.initial_config(), registry).expect("initial config");
    let proxy = TestServer::run(server.clone()).expect("proxy starts");
    let task = tokio::spawn(client.run(server));
    (proxy, task)
}

/// GETs `/` until the body is `want` (or the limit passes).
async fn answers(proxy: &TestServer, want: &str) -> bool {
    let addr = proxy.addr("main");
    eventually_async(LIMIT, || async move {
        client::get(addr, "/", &[]).await.text() == want
    })
    .await
}

/// Opens the stream, pushes cluster `app` (EDS) and endpoint `a`; returns after both
/// ACKs.
async fn serve_app(cp: &mut ControlPlane, a: &Upstream) {
    let first = cp.request_of(CLUSTER_TYPE).await;
    assert_eq!(
        first.node.as_ref().map(|n| n.id.as_str()),
        Some("test-node")
    );
    assert_eq!(first.version_info, "");
    assert!(
        first.resource_names.is_empty(),
        "CDS is a wildcard subscription"
    );
    cp.push(cds("1", &[eds_cluster("app")]));
    let sub = cp.request().await;
    assert_eq!(sub.type_url, ENDPOINT_TYPE, "EDS subscription first");
    assert_eq!(sub.resource_names, ["app"]);
    let ack = cp.request().await;
    assert_eq!(
        (
            ack.type_url.as_str(),
            ack.version_info.as_str(),
            ack.response_nonce.as_str()
        ),
        (CLUSTER_TYPE, "1", "cds-1")
    );
    assert!(ack.error_detail.is_none());
    let ack = cp.push_acked(eds("1", &[cla("app", &[a.addr])])).await;
    assert_eq!(ack.response_nonce, "eds-1");
    assert_eq!(ack.resource_names, ["app"]);
}

#[tokio::test]
async fn cluster_and_endpoints_over_ads_reach_the_upstream() {
    with_timeout(LIMIT * 2, async {
        let a = Upstream::named("a");
        let mut cp = ControlPlane::start().await;
        let (proxy, task) = proxy(&cp);
        // Before the control plane speaks, the route's cluster has no endpoints.
        let before = client::get(proxy.addr("main"), "/", &[]).await;
        assert_eq!(before.status, 503);
        serve_app(&mut cp, &a).await;
        assert!(answers(&proxy, "a").await);
        task.abort();
    })
    .await;
}

#[tokio::test]
async fn an_endpoint_change_moves_traffic() {
    with_timeout(LIMIT * 2, async {
        let (a, b) = (Upstream::named("a"), Upstream::named("b"));
        let mut cp = ControlPlane::start().await;
        let (proxy, task) = proxy(&cp);
        serve_app(&mut cp, &a).await;
        assert!(answers(&proxy, "a").await);
        cp.push_acked(eds("2", &[cla("app", &[b.addr])])).await;
        assert!(answers(&proxy, "b").await);
        // A new lb policy on the cluster is applied too, endpoints kept.
        let mut least = eds_cluster("app");
        least.lb_policy = LbPolicy::LeastRequest as i32;
        cp.push_acked(cds("2", &[least])).await;
        let config = &proxy.server().snapshot().config;
        let app = config
            .clusters
            .iter()
            .find(|c| c.name == "app")
            .expect("app");
        assert_eq!(app.lb.typed, "least_request");
        assert!(answers(&proxy, "b").await);
        task.abort();
    })
    .await;
}

#[tokio::test]
async fn a_bad_resource_is_nacked_and_the_last_good_config_keeps_serving() {
    with_timeout(LIMIT * 2, async {
        let a = Upstream::named("a");
        let mut cp = ControlPlane::start().await;
        let (proxy, task) = proxy(&cp);
        serve_app(&mut cp, &a).await;
        assert!(answers(&proxy, "a").await);

        let mut bad = eds_cluster("app");
        bad.outlier_detection = Some(OutlierDetection {
            split_external_local_origin_errors: true,
            ..OutlierDetection::default()
        });
        let (nack, detail) = cp.push_nacked(cds("2", &[bad])).await;
        assert_eq!(
            nack.version_info, "1",
            "a NACK carries the last accepted version"
        );
        assert_eq!(nack.error_detail.map(|d| d.code), Some(3));
        assert!(
            detail.contains("cluster \"app\": outlier_detection"),
            "{detail}"
        );

        // An endpoint the proxy cannot use: the field is named.
        let mut bad = cla("app", &[a.addr]);
        bad.endpoints[0].lb_endpoints[0].load_balancing_weight = Some(UInt32Value { value: 0 });
        let (nack, detail) = cp.push_nacked(eds("2", &[bad])).await;
        assert_eq!(nack.version_info, "1");
        assert!(
            detail.contains("endpoints[0].lb_endpoints[0].load_balancing_weight"),
            "{detail}"
        );

        // A config the server itself refuses (least_request compares 2 to 16).
        let mut c = eds_cluster("app");
        c.lb_policy = LbPolicy::LeastRequest as i32;
        c.lb_config = Some(LbConfig::LeastRequestLbConfig(LeastRequestLbConfig {
            choice_count: Some(UInt32Value { value: 1 }),
            ..LeastRequestLbConfig::default()
        }));
        let (nack, detail) = cp.push_nacked(cds("3", &[c])).await;
        assert_eq!(nack.version_info, "1");
        assert!(detail.starts_with("cluster \"app\": lb.config"), "{detail}");

        assert_eq!(client::get(proxy.addr("main"), "/", &[]).await.text(), "a");
        task.abort();
    })
    .await;
}

#[tokio::test]
async fn the_client_reconnects_after_the_control_plane_restarts() {
    with_timeout(LIMIT * 2, async {
        let (a, b) = (Upstream::named("a"), Upstream::named("b"));
        let mut cp = ControlPlane::start().await;
        let addr = cp.addr;
        let (proxy, task) = proxy(&cp);
        serve_app(&mut cp, &a).await;
        assert!(answers(&proxy, "a").await);

        cp.stop().await;
        // The proxy serves the last accepted config while the control plane is away.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(client::get(proxy.addr("main"), "/", &[]).await.text(), "a");

        let mut cp = ControlPlane::start_at(addr).await;
        let cds_again = cp.request().await;
        assert_eq!(cds_again.type_url, CLUSTER_TYPE);
        assert_eq!(
            cds_again.version_info, "1",
            "the accepted version is sent again"
        );
        assert_eq!(
            cds_again.response_nonce, "",
            "nonces belong to the old stream"
        );
        assert!(
            cds_again.node.is_some(),
            "the node goes on a new stream's first request"
        );
        let eds_again = cp.request().await;
        assert_eq!(eds_again.type_url, ENDPOINT_TYPE);
        assert_eq!(eds_again.resource_names, ["app"]);
        assert_eq!(eds_again.version_info, "1");

        cp.push_acked(eds("2", &[cla("app", &[b.addr])])).await;
        assert!(answers(&proxy, "b").await);
        task.abort();
    })
    .await;
}

#[tokio::test]
async fn garbage_is_nacked_never_a_panic() {
    with_timeout(LIMIT * 2, async {
        let a = Upstream::named("a");
        let mut cp = ControlPlane::start().await;
        let (proxy, task) = proxy(&cp);
        let _ = cp.request_of(CLUSTER_TYPE).await;

        let odd = "type.googleapis.com/example.Unknown";
        let (_, detail) = cp.push_nacked(response(odd, "1", "n1", vec![])).await;
        assert!(detail.contains("not subscribed"), "{detail}");

        let junk = Any {
            type_url: CLUSTER_TYPE.into(),
            value: vec![0xff, 0xff, 0xff],
        };
        let (nack, detail) = cp
            .push_nacked(response(CLUSTER_TYPE, "1", "n2", vec![junk]))
            .await;
        assert_eq!(nack.version_info, "");
        assert!(
            detail.starts_with("resources[0]: cannot decode as Cluster"),
            "{detail}"
        );

        let wrong = common::any(&cla("app", &[a.addr]));
        let (_, detail) = cp
            .push_nacked(response(CLUSTER_TYPE, "1", "n3", vec![wrong]))
            .await;
        assert!(detail.starts_with("resources[0]: type_url"), "{detail}");

        // Still alive: a good push is taken.
        serve_app_after_open(&mut cp, &a).await;
        assert!(answers(&proxy, "a").await);
        task.abort();
    })
    .await;
}

/// [`serve_app`] on a stream already open.
async fn serve_app_after_open(cp: &mut ControlPlane, a: &Upstream) {
    cp.push_acked(cds("1", &[eds_cluster("app")])).await;
    cp.push_acked(eds("1", &[cla("app", &[a.addr])])).await;
}
