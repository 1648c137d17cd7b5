//! The process's limit on open files, raised at start.
//!
//! Every proxied connection holds two descriptors, the client's and the upstream's.
//! A soft limit of 1,024, the usual default of a login shell and of a service
//! manager's units, caps a proxy near 500 connections, while the hard limit (often
//! 500,000 or more) allows far more: past the soft limit, `accept` fails with
//! `EMFILE` and clients wait in the backlog. As Go's runtime and HAProxy do at start,
//! the server raises the soft limit to the hard one (`runtime.raise_open_files_limit`,
//! on by default); only the hard limit, which an unprivileged process cannot raise,
//! then bounds the connection count, besides the listeners' `max_connections`.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// The soft limit on open files before and after [`raise_open_files_limit`]; `None`
/// is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFilesLimit {
    /// The soft limit the process started with.
    pub before: Option<u64>,
    /// The soft limit now: the hard limit, or `before` when it was already there.
    pub now: Option<u64>,
}

impl OpenFilesLimit {
    /// Whether the limit was raised.
    pub fn raised(&self) -> bool {
        self.before != self.now
    }
}

/// Raises this process's soft limit on open files (`RLIMIT_NOFILE`) to its hard
/// limit, and says what it was and is. A hard limit of "unlimited" (which Linux does
/// not allow for open files) leaves the soft limit as it is.
///
/// [`Server::run`](crate::Server::run) and
/// [`Server::run_until`](crate::Server::run_until) call it unless
/// `runtime.raise_open_files_limit` is `false`; a program that embeds the proxy's
/// parts without a `Server` can call it itself.
///
/// # Errors
/// When the kernel refuses the new limit (`setrlimit`).
///
/// ```
/// let limit = proxy_core::raise_open_files_limit().unwrap();
/// assert!(limit.now >= limit.before || limit.now.is_none());
/// // A second call finds the soft limit already at the hard one.
/// assert!(!proxy_core::raise_open_files_limit().unwrap().raised());
/// ```
pub fn raise_open_files_limit() -> std::io::Result<OpenFilesLimit> {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let unchanged = OpenFilesLimit {
        before: current,
        now: current,
    };
    let Some(hard) = maximum else {
        return Ok(unchanged);
    };
    if current.is_some_and(|soft| soft >= hard) {
        return Ok(unchanged);
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(hard),
            maximum,
        },
    )?;
    Ok(OpenFilesLimit {
        before: current,
        now: Some(hard),
    })
}

/// What [`Server::run_until`](crate::Server::run_until) does at start: raises the
/// limit and says so in the log; a failure is logged and the server runs with the
/// limit it has.
pub(super) fn raise_and_log() {
    match raise_open_files_limit() {
        Ok(limit) if limit.raised() => tracing::info!(
            before = ?limit.before,
            now = ?limit.now,
            "raised the open-file limit to the hard limit"
        ),
        Ok(limit) => {
            tracing::debug!(limit = ?limit.now, "open-file limit already at the hard limit")
        }
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}
