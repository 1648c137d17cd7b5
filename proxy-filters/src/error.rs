//! Errors: a filter config refused when its layer is built (naming the field), and
//! TCP proxy failures.

use std::{io, net::SocketAddr, sync::Arc};

/// A filter config refused when its layer is built. The field path is relative to
/// the filter's own section (`policies[0].principals[1]`, `abort.status`); placed in
/// a whole config (through [`From`] into [`proxy_core::ConfigError`]) core prefixes
/// it, e.g. `listeners[0].http_filters[2].config.abort.status: 99 is not a status
/// from 200 to 599`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value that deserializes but cannot work.
    #[error("{}", display(field, reason))]
    Invalid {
        /// The path of the offending field inside the section; empty for the
        /// section itself.
        field: String,
        /// Why it was refused.
        reason: String,
    },
    /// A cluster named by the section does not exist.
    #[error("{field}: unknown cluster {cluster:?}")]
    UnknownCluster {
        /// The path of the field naming the cluster.
        field: String,
        /// The missing cluster.
        cluster: String,
    },
}

fn display(field: &str, reason: &str) -> String {
    if field.is_empty() {
        reason.to_owned()
    } else {
        format!("{field}: {reason}")
    }
}

impl ConfigError {
    /// A refusal of `field` (a path inside the section).
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The path of the refused field inside the section.
    pub fn field(&self) -> &str {
        match self {
            Self::Invalid { field, .. } | Self::UnknownCluster { field, .. } => field,
        }
    }

    /// Why the field was refused.
    pub fn reason(&self) -> String {
        match self {
            Self::Invalid { reason, .. } => reason.clone(),
            Self::UnknownCluster { cluster, .. } => format!("unknown cluster {cluster:?}"),
        }
    }
}

/// The same field path and reason, in core's one config error.
impl From<ConfigError> for proxy_core::ConfigError {
    fn from(e: ConfigError) -> Self {
        proxy_core::ConfigError::new(e.field(), e.reason())
    }
}

/// Why a TCP-proxied connection ended early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TcpProxyError {
    /// The cluster had no endpoint to pick.
    #[error("no endpoints in cluster {cluster}")]
    NoEndpoints {
        /// The cluster name.
        cluster: Arc<str>,
    },
    /// Connecting to the picked endpoint failed.
    #[error("connect to {addr} failed")]
    Connect {
        /// The endpoint address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: proxy_core::ProxyError,
    },
    /// Reading or writing one side failed.
    #[error("copy failed")]
    Io(#[source] io::Error),
    /// Neither side sent a byte for the idle timeout.
    #[error("idle timeout")]
    IdleTimeout,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_error_keeps_the_path() {
        let e: proxy_core::ConfigError = ConfigError::invalid("abort.status", "bad").into();
        assert_eq!(e.path, "abort.status");
        assert_eq!(
            e.within("listeners[0].http_filters[1].config").to_string(),
            "listeners[0].http_filters[1].config.abort.status: bad"
        );
        let e: proxy_core::ConfigError = ConfigError::UnknownCluster {
            field: "cluster".into(),
            cluster: "x".into(),
        }
        .into();
        assert_eq!(e.to_string(), "cluster: unknown cluster \"x\"");
    }
}
