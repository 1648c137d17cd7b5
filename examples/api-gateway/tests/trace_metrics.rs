//! Tracing and per-consumer metrics of the shipped default config, end to end (the
//! binary on fresh ports, its inline key set swapped for a JWKS server the test
//! starts, an echo upstream): a request with a `traceparent` reaches the upstream in
//! the same trace with the gateway's span as parent, a request without one starts a
//! new trace, both logged with their trace id; `/stats/prometheus` on the admin
//! listener counts the JWT consumer's requests per API and status class.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use common::{default_config, get_with_token, jwks_server, token, Gateway};
use proxy_test_support::{eventually, free_addr, jwt::TestKey, prometheus, with_timeout, Upstream};

const LIMIT: Duration = Duration::from_secs(30);
const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// The trace id and parent id of the `traceparent` the upstream saw last.
fn upstream_traceparent(upstream: &Upstream) -> (String, String) {
    let seen = upstream.requests().pop().unwrap();
    let tp = seen.header("traceparent").expect("a traceparent upstream");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(parts[0], "00", "{tp}");
    (parts[1].to_owned(), parts[2].to_owned())
}

#[tokio::test]
async fn traceparent_propagates_and_consumers_are_counted_per_api() {
    with_timeout(LIMIT, async {
        let key = TestKey::ed25519();
        let jwks = jwks_server(vec![key.jwk("k1")]);
        let upstream = Upstream::echo("app");
        let (listen, admin) = (free_addr(), free_addr());
        let gw = Gateway::start(Some(&default_config(listen, admin, &jwks, &upstream)), admin).await;
        let alice = token(&key, "alice");

        // The caller's trace goes on; the upstream's parent is the gateway's span.
        let r = get_with_token(listen, &alice, &[("traceparent", CALLER), ("tracestate", "vendor=abc")]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-trace-id"), Some(CALLER_TRACE));
        let (trace, parent) = upstream_traceparent(&upstream);
        assert_eq!(trace, CALLER_TRACE);
        assert_ne!(parent, CALLER_SPAN);
        assert_eq!(upstream.requests().pop().unwrap().header("tracestate"), Some("vendor=abc"));

        // No traceparent: a new trace, returned to the client.
        let r = get_with_token(listen, &alice, &[]).await;
        assert_eq!(r.status, 200);
        let (fresh, _) = upstream_traceparent(&upstream);
        assert_ne!(fresh, CALLER_TRACE);
        assert_eq!(r.header("x-trace-id"), Some(fresh.as_str()));

        // Counted before RBAC: blocked-user's 403 is a 4xx of the same API.
        assert_eq!(get_with_token(listen, &token(&key, "blocked-user"), &[]).await.status, 403);

        let m = gw.metrics().await;
        let requests = |consumer: &str, class: &str| {
            prometheus::sample(
                &m,
                &format!(r#"proxy_filters_api_requests_total{{api="echo",consumer="{consumer}",status_class="{class}"}}"#),
            )
        };
        assert_eq!(requests("alice", "2xx"), Some(2.0), "{m}");
        assert_eq!(requests("blocked-user", "4xx"), Some(1.0), "{m}");
        assert_eq!(
            prometheus::sample(
                &m,
                r#"proxy_filters_api_request_duration_seconds_count{api="echo",consumer="alice"}"#
            ),
            Some(2.0),
            "{m}"
        );

        // The access log and the span log carry the trace ids, the span its consumer.
        let logged = eventually(Duration::from_secs(5), || {
            let logs = gw.logs();
            logs.contains(&format!("\"trace_id\":\"{CALLER_TRACE}\""))
                && logs.contains(&format!("\"trace_id\":\"{fresh}\""))
                && logs.contains(&format!("\"parent_id\":\"{CALLER_SPAN}\""))
                && logs.contains("\"consumer\":\"alice\"")
        })
        .await;
        assert!(logged, "{}", gw.logs());
    })
    .await;
}
