//! The errors of an upgrade.

use std::{io, path::PathBuf, time::Duration};

/// Why an upgrade failed. The side that sees the error keeps what it has: the old
/// process keeps serving, the new one closes every socket it received.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// The upgrade socket could not be bound (the old process's side).
    #[error("cannot listen for upgrades on {}", path.display())]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// No process serves upgrades at the path (the new process's side).
    #[error("cannot reach a process to upgrade at {}", path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Reading or writing the upgrade connection failed.
    #[error("upgrade connection failed")]
    Io(#[from] io::Error),
    /// The peer sent nothing within the timeout.
    #[error("no answer from the peer within {0:?}")]
    Timeout(Duration),
    /// The peer closed the connection before the upgrade was complete.
    #[error("the peer closed the upgrade connection")]
    Closed,
    /// The peer speaks another version of the protocol.
    #[error("protocol version mismatch: this process speaks version {ours}, the peer {theirs}")]
    VersionMismatch {
        /// Ours ([`crate::wire::VERSION`]).
        ours: u16,
        /// The peer's.
        theirs: u16,
    },
    /// Bytes that are not a well-formed message of the protocol.
    #[error("malformed upgrade message: {0}")]
    Malformed(String),
    /// A message shorter than its header says, or longer than the protocol allows.
    #[error("truncated upgrade message: {0}")]
    Truncated(String),
    /// More descriptors than the protocol allows in a message or in all.
    #[error("too many descriptors: {got} (at most {max})")]
    TooManyDescriptors {
        /// How many came (at least).
        got: usize,
        /// The limit.
        max: usize,
    },
    /// A message out of turn.
    #[error("unexpected {got} message, expected {expected}")]
    Unexpected {
        /// The kind received.
        got: &'static str,
        /// The kind expected.
        expected: &'static str,
    },
    /// The peer refused the upgrade and said why.
    #[error("the peer refused the upgrade: {reason}")]
    Refused {
        /// The refusal's code.
        code: crate::wire::ErrorCode,
        /// The peer's explanation.
        reason: String,
    },
    /// A descriptor received is not the listening socket its record describes.
    #[error("socket {index} ({name} {address}) is not a listening socket bound there: {why}")]
    BadSocket {
        /// Its position among the sockets received.
        index: usize,
        /// The listener name of its record.
        name: String,
        /// The address of its record.
        address: String,
        /// What is wrong.
        why: String,
    },
}

impl UpgradeError {
    /// Whether the old process refused because another upgrade is in progress: a
    /// caller may retry later.
    ///
    /// ```
    /// use proxy_upgrade::{wire::ErrorCode, UpgradeError};
    /// let e = UpgradeError::Refused { code: ErrorCode::Busy, reason: "busy".into() };
    /// assert!(e.is_busy());
    /// ```
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            Self::Refused {
                code: crate::wire::ErrorCode::Busy,
                ..
            }
        )
    }
}
