//! Errors: configuration refused at load (naming the field) and TCP proxy failures.

use std::{io, net::SocketAddr, sync::Arc};

/// A filter section refused at load. The message names the field path, e.g.
/// `rbac.policies[0].principals[1].source_ip: "10.0.0.0/33" is not a valid CIDR`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The section does not deserialize (unknown field, wrong type, bad value).
    #[error("{filter}.{path}: {reason}")]
    Invalid {
        /// The filter's registered name.
        filter: &'static str,
        /// The path of the offending field inside the section.
        path: String,
        /// Why it was refused.
        reason: String,
    },
    /// A section that deserializes but is inconsistent.
    #[error("{filter}.{field}: {reason}")]
    Field {
        /// The filter's registered name.
        filter: &'static str,
        /// The path of the offending field.
        field: String,
        /// Why it was refused.
        reason: String,
    },
    /// A cluster named by the section does not exist.
    #[error("{filter}.{field}: unknown cluster {cluster:?}")]
    UnknownCluster {
        /// The filter's registered name.
        filter: &'static str,
        /// The path of the field naming the cluster.
        field: &'static str,
        /// The missing cluster.
        cluster: String,
    },
}

impl ConfigError {
    /// A refusal of `field` in the section of `filter`.
    pub fn field(
        filter: &'static str,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self::Field {
            filter,
            field: field.into(),
            reason: reason.into(),
        }
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
