//! `streams: per_type`, for control planes without ADS: CDS, EDS and LDS each on
//! their own service (both variants), each stream opened with its first request
//! carrying the node; clusters and endpoints pushed on their streams carry traffic,
//! a NACK goes back on the stream of the refused type, and after the control plane
//! restarts every stream is opened again with the versions held.

use crate::common;

use std::time::Duration;

use common::{any, cds, cla, delta, delta_resource, eds, eds_cluster, ControlPlane};
use envoy_types::pb::envoy::config::cluster::v3::OutlierDetection;
use proxy_core::{config::Config, Registry, Server};
use proxy_test_support::{client, eventually_async, with_timeout, yaml, TestServer, Upstream};
use proxy_xds::{
    resources::{CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE},
    ApiType, BackoffConfig, Streams, XdsClient, XdsConfig,
};

const LIMIT: Duration = Duration::from_secs(20);

/// A proxy whose listener `main` routes to cluster `app`, asking `cp` for
/// clusters, endpoints and listeners on a stream per type, and the client task.
fn proxy(cp: &ControlPlane, api_type: ApiType) -> (TestServer, tokio::task::JoinHandle<()>) {
    let base = Config::from_yaml(&yaml::config(&[yaml::listener("main", "app", &[])], &[]))
        .expect("base config");
    let mut xds = XdsConfig::new(cp.addr.to_string(), "split-node");
    xds.api_type = api_type;
    xds.streams = Streams::PerType;
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
    (proxy, tokio::spawn(client.run(server)))
}

async fn answers(proxy: &TestServer, want: &str) -> bool {
    let addr = proxy.addr("main");
    eventually_async(LIMIT, || async move {
        client::get(addr, "/", &[]).await.text() == want
    })
    .await
}

#[tokio::test]
async fn state_of_the_world_on_a_stream_per_type() {
    with_timeout(LIMIT * 2, async {
        let (a, b) = (Upstream::named("a"), Upstream::named("b"));
        let mut cp = ControlPlane::start().await;
        let addr = cp.addr;
        let (proxy, task) = proxy(&cp, ApiType::Sotw);

        // CDS and LDS open their streams, each first request with the node.
        let cds_open = cp.request_of(CLUSTER_TYPE).await;
        assert!(cds_open.node.is_some());
        let lds_open = cp.request_of(LISTENER_TYPE).await;
        assert!(
            lds_open.node.is_some(),
            "each stream's first request has the node"
        );

        cp.push(cds("1", &[eds_cluster("app")]));
        let sub = cp.request_of(ENDPOINT_TYPE).await;
        assert_eq!(sub.resource_names, ["app"]);
        assert!(sub.node.is_some(), "the EDS stream opens with the node");
        cp.push_acked(eds("1", &[cla("app", &[a.addr])])).await;
        assert!(answers(&proxy, "a").await);

        let mut bad = eds_cluster("app");
        bad.outlier_detection = Some(OutlierDetection {
            split_external_local_origin_errors: true,
            ..OutlierDetection::default()
        });
        let (nack, detail) = cp.push_nacked(cds("2", &[bad])).await;
        assert_eq!(nack.version_info, "1");
        assert!(
            detail.starts_with("cluster \"app\": outlier_detection"),
            "{detail}"
        );

        cp.stop().await;
        let mut cp = ControlPlane::start_at(addr).await;
        let mut opened = Vec::new();
        while opened.len() < 3 {
            let r = cp.request().await;
            assert!(r.node.is_some(), "{r:?}");
            opened.push((r.type_url, r.version_info));
        }
        opened.sort();
        assert_eq!(
            opened,
            [
                (CLUSTER_TYPE.to_owned(), "1".to_owned()),
                (ENDPOINT_TYPE.to_owned(), "1".to_owned()),
                (LISTENER_TYPE.to_owned(), String::new()),
            ]
        );
        cp.push_acked(eds("2", &[cla("app", &[b.addr])])).await;
        assert!(answers(&proxy, "b").await);
        task.abort();
    })
    .await;
}

#[tokio::test]
async fn delta_on_a_stream_per_type() {
    with_timeout(LIMIT * 2, async {
        let a = Upstream::named("a");
        let mut cp = ControlPlane::start().await;
        let (proxy, task) = proxy(&cp, ApiType::Delta);

        let cds_open = cp.delta_request_of(CLUSTER_TYPE).await;
        assert!(cds_open.node.is_some());
        let app = delta_resource("app", "c1", any(&eds_cluster("app")));
        cp.push_delta(delta(CLUSTER_TYPE, "1", "c1", vec![app], &[]));
        let sub = cp.delta_request_of(ENDPOINT_TYPE).await;
        assert_eq!(sub.resource_names_subscribe, ["app"]);
        assert!(sub.node.is_some(), "the EDS stream opens with the node");
        let endpoints = delta_resource("app", "e1", any(&cla("app", &[a.addr])));
        let ack = cp
            .push_delta_answered(delta(ENDPOINT_TYPE, "1", "e1", vec![endpoints], &[]))
            .await;
        assert!(ack.error_detail.is_none(), "{:?}", ack.error_detail);
        assert!(answers(&proxy, "a").await);
        task.abort();
    })
    .await;
}
