//! Waiting for a condition that becomes true in the background (a mirrored request
//! arrives, a health check flips, a log line is written).

use std::{
    future::Future,
    time::{Duration, Instant},
};

/// How often a condition is checked.
const POLL: Duration = Duration::from_millis(20);

/// Checks `condition` every 20 ms until it holds or `limit` has passed; returns
/// whether it held (checked one last time at the limit).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// let start = std::time::Instant::now();
/// let held = proxy_test_support::eventually(Duration::from_secs(1), || {
///     start.elapsed() > Duration::from_millis(50)
/// })
/// .await;
/// assert!(held);
/// # });
/// ```
pub async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(POLL).await;
    }
    condition()
}

/// [`eventually`] for a condition that must await (an HTTP request, a metrics page).
pub async fn eventually_async<F, Fut>(limit: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(POLL).await;
    }
    condition().await
}
