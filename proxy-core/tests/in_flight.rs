//! In-flight gauges end with the request even when its caller goes away: a request
//! future dropped mid-call (client gone, a timeout above the proxy) takes itself out
//! of the listener's, route's, cluster's and endpoint's active counts, so balancers
//! that read them (least request) are not skewed forever.

use std::time::Duration;

use proxy_core::{
    cluster::Cluster,
    config::{RouteConfig, VirtualHostConfig},
    proxy::Proxy,
    router::RouteTable,
    snapshot::Routing,
    Body, HttpRequest,
};
use proxy_test_support::Upstream;
use tower::ServiceExt;

#[tokio::test(flavor = "current_thread")]
async fn dropped_requests_leave_the_active_counts() {
    // An upstream that accepts and never answers.
    let upstream = Upstream::blackhole();
    let cluster = Cluster::builder("slow")
        .endpoint(upstream.addr)
        .build()
        .unwrap();
    let vhost = VirtualHostConfig::new("all", ["*"]).route(RouteConfig::new("slow").named("slow"));
    let routes = RouteTable::build("", &[vhost], &|c| c == "slow").unwrap();
    let routing = Routing::new(routes, [cluster.clone()]);
    let proxy = Proxy::from_routing(routing);

    for _ in 0..21 {
        let req: HttpRequest = http::Request::get("/x")
            .header("host", "a")
            .body(Body::empty())
            .unwrap();
        let call = proxy.clone().oneshot(req);
        // The caller gives up: the future is dropped while the upstream is silent.
        assert!(tokio::time::timeout(Duration::from_millis(20), call)
            .await
            .is_err());
    }
    let endpoint = &cluster.endpoints[0];
    assert_eq!(endpoint.active_requests(), 0, "endpoint active leaked");
    assert_eq!(cluster.stats.active(), 0, "cluster active leaked");
    assert_eq!(endpoint.stats.requests(), 21);
}
