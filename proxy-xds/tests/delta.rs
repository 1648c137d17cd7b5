//! Delta ADS against the in-process control plane, driving a real proxy on
//! 127.0.0.1, request by request: the wildcard CDS subscription, EDS subscribed and
//! unsubscribed as clusters come and go (only the change is sent), endpoints updated
//! and removed, a NACK that leaves the running config alone, and a new stream that
//! says which versions the client holds.

use crate::common;

use std::time::Duration;

use common::{any, cla, delta, delta_resource, eds_cluster, ControlPlane};
use envoy_types::pb::envoy::{
    config::cluster::v3::OutlierDetection,
    service::discovery::v3::{DeltaDiscoveryRequest, Resource},
};
use proxy_core::{config::Config, Registry, Server};
use proxy_test_support::{client, eventually_async, with_timeout, yaml, TestServer, Upstream};
use proxy_xds::{
    resources::{CLUSTER_TYPE, ENDPOINT_TYPE},
    ApiType, BackoffConfig, XdsClient, XdsConfig, XdsStatus,
};

const LIMIT: Duration = Duration::from_secs(20);

/// A proxy whose listener `main` routes everything to cluster `app`, speaking delta
/// ADS to `cp`, and the spawned client.
fn proxy(
    cp: &ControlPlane,
) -> (
    TestServer,
    tokio::task::JoinHandle<()>,
    tokio::sync::watch::Receiver<XdsStatus>,
) {
    let base = Config::from_yaml(&yaml::config(&[yaml::listener("main", "app", &[])], &[]))
        .expect("base config");
    let mut xds = XdsConfig::new(cp.addr.to_string(), "delta-node");
    xds.api_type = ApiType::Delta;
    xds.backoff = BackoffConfig {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
    };
    let client = XdsClient::new(xds, base);
    let status = client.status();
    let mut registry = Registry::default();
    proxy_lb::register(&mut registry);
    let server = Server::new(client.initial_config(), registry).expect("initial config");
    let proxy = TestServer::run(server.clone()).expect("proxy starts");
    (proxy, tokio::spawn(client.run(server)), status)
}

/// GETs `/` until the answer is `status` with body `want`.
async fn answers(proxy: &TestServer, status: u16, want: &str) -> bool {
    let addr = proxy.addr("main");
    eventually_async(LIMIT, || async move {
        let r = client::get(addr, "/", &[]).await;
        r.status == status && (want.is_empty() || r.text() == want)
    })
    .await
}

fn cluster(name: &str, version: &str) -> Resource {
    delta_resource(name, version, any(&eds_cluster(name)))
}

fn endpoints(name: &str, version: &str, up: &Upstream) -> Resource {
    delta_resource(name, version, any(&cla(name, &[up.addr])))
}

/// Asserts `r` is an ACK of nonce `nonce`.
fn is_ack(r: &DeltaDiscoveryRequest, type_url: &str, nonce: &str) {
    assert_eq!(
        (r.type_url.as_str(), r.response_nonce.as_str()),
        (type_url, nonce)
    );
    assert!(r.error_detail.is_none(), "{:?}", r.error_detail);
}

#[tokio::test]
async fn delta_subscriptions_removals_nacks_and_resubscription() {
    with_timeout(LIMIT * 2, async {
        let (a, b) = (Upstream::named("a"), Upstream::named("b"));
        let mut cp = ControlPlane::start().await;
        let addr = cp.addr;
        let (proxy, task, status) = proxy(&cp);

        let first = cp.delta_request_of(CLUSTER_TYPE).await;
        assert_eq!(first.node.map(|n| n.id), Some("delta-node".to_owned()));
        assert!(first.resource_names_subscribe.is_empty(), "wildcard");
        assert!(first.initial_resource_versions.is_empty());

        // A cluster: EDS is subscribed to its name before the CDS ACK.
        cp.push_delta(delta(
            CLUSTER_TYPE,
            "1",
            "c1",
            vec![cluster("app", "c-1")],
            &[],
        ));
        let sub = cp.delta_request().await;
        assert_eq!(sub.type_url, ENDPOINT_TYPE);
        assert_eq!(sub.resource_names_subscribe, ["app"]);
        assert!(sub.initial_resource_versions.is_empty());
        is_ack(&cp.delta_request().await, CLUSTER_TYPE, "c1");

        let ack = cp
            .push_delta_answered(delta(
                ENDPOINT_TYPE,
                "1",
                "e1",
                vec![endpoints("app", "e-1", &a)],
                &[],
            ))
            .await;
        is_ack(&ack, ENDPOINT_TYPE, "e1");
        assert!(answers(&proxy, 200, "a").await);
        let ack = cp
            .push_delta_answered(delta(
                ENDPOINT_TYPE,
                "2",
                "e2",
                vec![endpoints("app", "e-2", &b)],
                &[],
            ))
            .await;
        is_ack(&ack, ENDPOINT_TYPE, "e2");
        assert_eq!(client::get(proxy.addr("main"), "/", &[]).await.text(), "b");

        // A second cluster: only its name is subscribed; removed, only it goes.
        cp.push_delta(delta(
            CLUSTER_TYPE,
            "2",
            "c2",
            vec![cluster("other", "o-1")],
            &[],
        ));
        let sub = cp.delta_request().await;
        assert_eq!(sub.resource_names_subscribe, ["other"]);
        assert!(sub.resource_names_unsubscribe.is_empty());
        is_ack(&cp.delta_request().await, CLUSTER_TYPE, "c2");
        cp.push_delta(delta(CLUSTER_TYPE, "3", "c3", vec![], &["other"]));
        let sub = cp.delta_request().await;
        assert_eq!(sub.resource_names_unsubscribe, ["other"]);
        assert!(sub.resource_names_subscribe.is_empty());
        is_ack(&cp.delta_request().await, CLUSTER_TYPE, "c3");

        // A refused update: NACKed by nonce, the field named, nothing changes.
        let mut bad = eds_cluster("app");
        bad.outlier_detection = Some(OutlierDetection {
            split_external_local_origin_errors: true,
            ..OutlierDetection::default()
        });
        let nack = cp
            .push_delta_answered(delta(
                CLUSTER_TYPE,
                "4",
                "c4",
                vec![delta_resource("app", "c-2", any(&bad))],
                &[],
            ))
            .await;
        let detail = nack.error_detail.expect("a NACK");
        assert_eq!(detail.code, 3);
        assert!(
            detail
                .message
                .starts_with("cluster \"app\": outlier_detection"),
            "{}",
            detail.message
        );
        assert_eq!(client::get(proxy.addr("main"), "/", &[]).await.text(), "b");
        // The status counts per type.
        let now = status.borrow().clone();
        let clusters = &now.types["clusters"];
        assert_eq!(
            (clusters.acks, clusters.nacks, clusters.resources),
            (3, 1, 1)
        );
        assert_eq!(
            clusters.version, "3",
            "the last accepted system_version_info"
        );
        assert!(clusters
            .last_nack
            .as_deref()
            .is_some_and(|n| n.contains("outlier_detection")));
        let endpoints = &now.types["endpoints"];
        assert_eq!(
            (endpoints.acks, endpoints.nacks, endpoints.resources),
            (2, 0, 1)
        );
        assert!(now.connected);

        // A new stream: the versions held, per type, and the EDS names.
        cp.stop().await;
        let mut cp = ControlPlane::start_at(addr).await;
        let cds = cp.delta_request().await;
        assert_eq!(cds.type_url, CLUSTER_TYPE);
        assert!(cds.node.is_some());
        assert_eq!(
            cds.initial_resource_versions,
            [("app".to_owned(), "c-1".to_owned())].into()
        );
        let eds = cp.delta_request().await;
        assert_eq!(eds.type_url, ENDPOINT_TYPE);
        assert_eq!(eds.resource_names_subscribe, ["app"]);
        assert_eq!(
            eds.initial_resource_versions,
            [("app".to_owned(), "e-2".to_owned())].into()
        );
        assert!(eds.node.is_none() && eds.response_nonce.is_empty());

        // Endpoints removed: the cluster stays, without endpoints (503).
        let ack = cp
            .push_delta_answered(delta(ENDPOINT_TYPE, "3", "e3", vec![], &["app"]))
            .await;
        is_ack(&ack, ENDPOINT_TYPE, "e3");
        assert!(answers(&proxy, 503, "").await);
        let status = proxy.server().snapshot();
        let app = status
            .config
            .clusters
            .iter()
            .find(|c| c.name == "app")
            .expect("app");
        assert!(app.endpoints.is_empty());
        task.abort();
    })
    .await;
}
