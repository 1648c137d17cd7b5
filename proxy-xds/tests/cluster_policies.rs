//! A cluster with outlier detection, an HTTP health check and circuit breakers, as
//! Istio sends them, pushed over ADS by the independent Python control plane
//! (`tests/control_plane/ads_server.py`): the client ACKs it, the running cluster
//! carries the breaker's limit, and an endpoint failing its health check stops
//! receiving traffic while the healthy one serves every request. Skipped loudly when
//! the Python packages are missing (`scripts/deps/proxy-xds.sh` installs them).

use crate::control_plane;

use std::{collections::BTreeSet, time::Duration};

use control_plane::{Outcome, PyControlPlane};
use proxy_core::{config::Config, Registry, Server};
use proxy_test_support::{
    client, eventually_async, free_addr, prometheus::sample, upstream::response, with_timeout,
    yaml, TestServer, Upstream,
};
use proxy_xds::{ApiType, BackoffConfig, XdsClient, XdsConfig};
use serde_json::json;

/// An upstream answering `name` with 200, and its health check path `/healthz` with
/// `health`.
fn upstream(name: &'static str, health: u16) -> Upstream {
    Upstream::http(move |seen| {
        if seen.path() == "/healthz" {
            response(health, "")
        } else {
            response(200, name)
        }
    })
}

async fn sick_endpoint_is_taken_out(api_type: ApiType) {
    let Some(mut cp) = PyControlPlane::start().await else {
        return;
    };
    let (good, sick) = (upstream("good", 200), upstream("sick", 503));
    let admin = free_addr();
    let base = Config::from_yaml(&format!(
        "admin: {{ address: {admin} }}\n{}",
        yaml::config(&[yaml::listener("main", "app", &[])], &[])
    ))
    .expect("base config");
    let mut xds = XdsConfig::new(cp.address(), "policies-node");
    xds.api_type = api_type;
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
    cp.request("cds", "request").await;

    let fields = json!({
        "outlier_detection": {
            "consecutive_5xx": 3,
            "interval": "1s",
            "base_ejection_time": "30s",
            "max_ejection_percent": 100,
            "enforcing_success_rate": 0,
        },
        "health_checks": [{
            "timeout": "1s",
            "interval": "0.1s",
            "unhealthy_threshold": 1,
            "healthy_threshold": 1,
            "http_health_check": {"path": "/healthz"},
        }],
        "circuit_breakers": {"thresholds": [{
            "max_connections": 4294967295u32,
            "max_pending_requests": 4294967295u32,
            "max_requests": 64,
            "max_retries": 2,
        }]},
    });
    let answers = cp
        .push(
            "1",
            json!({
                "clusters": [{"name": "app", "fields": fields}],
                "endpoints": {"app": [good.addr.to_string(), sick.addr.to_string()]},
            }),
            &["cds", "eds"],
        )
        .await;
    for t in ["cds", "eds"] {
        assert_eq!(answers.get(t), Some(&Outcome::Ack), "{t}: {answers:?}");
    }

    // The breaker's limit is the running cluster's.
    let (_, metrics) = proxy.admin_get("/stats/prometheus").await;
    assert_eq!(
        sample(
            &metrics,
            r#"proxy_cluster_circuit_breaker_limit{cluster="app",limit="max_requests"}"#
        ),
        Some(64.0),
        "{metrics}"
    );

    // The sick endpoint fails its health check: once the checker saw it, every
    // request goes to the good one.
    let main = proxy.addr("main");
    let only_good = eventually_async(Duration::from_secs(10), || async move {
        let mut seen = BTreeSet::new();
        for _ in 0..20 {
            let r = client::get(main, "/", &[]).await;
            assert_eq!(r.status, 200, "{}", r.text());
            seen.insert(r.text());
        }
        seen == BTreeSet::from(["good".to_owned()])
    })
    .await;
    assert!(only_good, "the sick endpoint keeps receiving traffic");
    assert!(
        sick.requests().iter().any(|s| s.path() == "/healthz"),
        "the health check probed the sick endpoint"
    );
    let before = sick.requests().len();
    for _ in 0..20 {
        let r = client::get(main, "/", &[]).await;
        assert_eq!(r.text(), "good");
    }
    // Only health checks reach it now.
    let requests: Vec<_> = sick.requests().into_iter().skip(before).collect();
    assert!(
        requests.iter().all(|s| s.path() == "/healthz"),
        "{:?}",
        requests
            .iter()
            .map(|s| s.path().to_owned())
            .collect::<Vec<_>>()
    );
    task.abort();
    cp.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_style_cluster_policies_are_acked_and_enforced_sotw() {
    with_timeout(
        Duration::from_secs(60),
        sick_endpoint_is_taken_out(ApiType::Sotw),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_style_cluster_policies_are_acked_and_enforced_delta() {
    with_timeout(
        Duration::from_secs(60),
        sick_endpoint_is_taken_out(ApiType::Delta),
    )
    .await;
}
