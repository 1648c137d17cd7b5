//! A drain of the proxy with real third-party clients' calls in flight
//! (`interop/drain.rs`): sofa-rpc-node over Bolt, dubbo2.js over Dubbo, against
//! sofa-rpc-node's server. A test binary of its own, beside `tests/interop.rs`, as it
//! starts and drains a proxy per round.
//!
//! Needs node and the packages `scripts/deps/proxy-codec.sh` installs; without them
//! the tests print `SKIPPED:` and pass.

#[path = "interop/drain.rs"]
mod drain;

use std::time::Duration;

/// The limit on each test.
const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn bolt_drain_delivers_every_answer_owed() {
    let test = "bolt_drain_delivers_every_answer_owed";
    tokio::time::timeout(LIMIT, drain::drain_delivers_every_answer_owed("bolt", test))
        .await
        .expect("test timed out");
}

#[tokio::test]
async fn dubbo_drain_delivers_every_answer_owed() {
    let test = "dubbo_drain_delivers_every_answer_owed";
    tokio::time::timeout(
        LIMIT,
        drain::drain_delivers_every_answer_owed("dubbo", test),
    )
    .await
    .expect("test timed out");
}
