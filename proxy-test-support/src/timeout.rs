//! A deadline on a whole test, with a watchdog that kills the test's child processes
//! if even cancelling the test does not end it.

use std::{future::Future, process::Command, sync::mpsc, time::Duration};

use crate::tools::children;

/// Runs a test body with a deadline. At `limit` the body is cancelled and the test
/// panics (dropping, and so stopping, what it started). If the body does not yield
/// to be cancelled (a blocking call), a watchdog thread kills the child processes
/// registered with [`children::track`] and exits the process 10 s later.
///
/// # Panics
/// When the body does not finish within `limit`.
pub async fn with_timeout<F: Future<Output = ()>>(limit: Duration, body: F) {
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) =
            done_rx.recv_timeout(limit + Duration::from_secs(10))
        {
            eprintln!(
                "WATCHDOG: test still running {limit:?} + 10s after start; killing children and exiting"
            );
            for pid in children::tracked() {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
            std::process::exit(101);
        }
    });
    let res = tokio::time::timeout(limit, body).await;
    let _ = done_tx.send(());
    let _ = watchdog.join();
    assert!(res.is_ok(), "test timed out after {limit:?}");
}
