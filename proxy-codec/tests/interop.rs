//! Interop with real third-party Bolt and Dubbo peers through the proxy: the one
//! scenario set of `interop/support.rs`, run once per protocol (`bolt::*`,
//! `dubbo::*`), and the `auto` listener serving every protocol and HTTP on one port.
//!
//! Needs node, python3 and the packages `scripts/deps/proxy-codec.sh` installs;
//! without them those tests print `SKIPPED:` and pass. The captured-frame scenarios
//! need nothing.

#[path = "interop/support.rs"]
mod support;

use support::{Peers, Proto, TEST_LIMIT};

/// Runs `scenario` with the driver of `proto`, within the time limit.
async fn run<F>(proto: Proto, test: &str, scenario: impl FnOnce(Peers) -> F)
where
    F: std::future::Future<Output = ()>,
{
    tokio::time::timeout(TEST_LIMIT, scenario(Peers::new(proto, test)))
        .await
        .expect("test timed out");
}

/// One test per scenario for the protocol `$proto`, in a module named after it.
macro_rules! scenarios {
    ($module:ident, $proto:expr) => {
        mod $module {
            use super::{run, support};

            scenarios!(@tests $proto;
                peers_work_directly,
                calls_heartbeats_oneway_and_no_route,
                other_clients_through_proxy,
                routes_services_to_different_clusters,
                server_killed_mid_flight_fails_only_its_calls,
                captured_frames_through_proxy,
                proxy_failures_answered_with_protocol_statuses,
                downstream_connections_share_one_upstream_connection,
                oversized_response_fails_only_its_call,
            );
        }
    };
    (@tests $proto:expr; $($scenario:ident,)*) => {
        $(
            #[tokio::test]
            async fn $scenario() {
                run($proto, stringify!($scenario), |peers| async move {
                    support::$scenario(&peers).await
                })
                .await;
            }
        )*
    };
}

scenarios!(bolt, super::Proto::Bolt);
scenarios!(dubbo, super::Proto::Dubbo);

#[tokio::test]
async fn auto_listener_serves_bolt_dubbo_and_http_on_one_port() {
    let test = "auto_listener_serves_bolt_dubbo_and_http_on_one_port";
    let all = [
        Peers::new(Proto::Bolt, test),
        Peers::new(Proto::Dubbo, test),
    ];
    tokio::time::timeout(
        TEST_LIMIT,
        support::auto_listener_serves_every_protocol_and_http(&all),
    )
    .await
    .expect("test timed out");
}
