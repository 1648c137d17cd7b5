//! Failed `accept`s, logged without flooding the log.
//!
//! An accept loop that fails (most often for want of file descriptors, under a flood
//! of connections) backs off briefly and tries again, so the same failure comes back
//! many times a second for as long as the cause lasts. The first is logged at once,
//! with the open-file limit when that is the cause; the ones after it are counted and
//! summed up in one line at most every [`EVERY`].

use std::time::Duration;

use rustix::{
    io::Errno,
    process::{getrlimit, Resource},
};
use tokio::time::Instant;

/// How often a run of failures is logged at most.
const EVERY: Duration = Duration::from_secs(5);

/// One accept loop's failures since it last logged one.
#[derive(Debug, Default)]
pub(super) struct AcceptErrors {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl AcceptErrors {
    /// Records a failed `accept` on `listener`; logs it when none was logged in the
    /// last [`EVERY`], with the count of those not logged since.
    pub(super) fn failed(&mut self, listener: &str, e: &std::io::Error) {
        let now = Instant::now();
        if self.last_logged.is_some_and(|at| now < at + EVERY) {
            self.unlogged += 1;
            return;
        }
        let also = std::mem::take(&mut self.unlogged);
        self.last_logged = Some(now);
        log(listener, e, also);
    }
}

/// Logs one failed `accept`; `also` failed since the last line and were not logged.
/// One for want of file descriptors names the limit, which then holds clients back.
fn log(listener: &str, e: &std::io::Error, also: u64) {
    match Errno::from_io_error(e) {
        Some(Errno::MFILE) => tracing::warn!(
            listener,
            error = %e,
            also,
            open_files_limit = ?getrlimit(Resource::Nofile).current,
            "accept failed: the process is at its open-file limit"
        ),
        Some(Errno::NFILE) => tracing::warn!(
            listener,
            error = %e,
            also,
            "accept failed: the system is at its open-file limit (fs.file-max)"
        ),
        _ => tracing::warn!(listener, error = %e, also, "accept failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_run_of_failures_is_logged_once_per_interval_with_a_count() {
        let e = std::io::Error::from_raw_os_error(Errno::MFILE.raw_os_error());
        let mut errors = AcceptErrors::default();
        errors.failed("l", &e);
        assert_eq!(errors.unlogged, 0, "the first is logged at once");
        for _ in 0..99 {
            tokio::time::advance(Duration::from_millis(50)).await;
            errors.failed("l", &e);
        }
        // 4.95 s of failures: all but the first counted, none logged.
        assert_eq!(errors.unlogged, 99);
        tokio::time::advance(Duration::from_millis(50)).await;
        errors.failed("l", &e);
        assert_eq!(errors.unlogged, 0, "logged again once the interval passed");
    }
}
