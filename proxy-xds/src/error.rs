//! Why a control plane's resource is refused, and why the client stopped.

use std::fmt;

/// A resource refused by this proxy: the NACK's `error_detail`. It names the resource
/// (`cluster "web"`), the field path inside it (`lb_policy`,
/// `endpoints[0].lb_endpoints[1].endpoint.address`) and the reason.
///
/// # Example
/// ```
/// let r = proxy_xds::Refusal::new("cluster \"web\"", "outlier_detection", "not supported");
/// assert_eq!(r.to_string(), "cluster \"web\": outlier_detection: not supported");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub struct Refusal {
    /// The resource: `cluster "web"`, `cluster_load_assignment "web"`, or
    /// `resources[2]` when its name is not known.
    pub resource: String,
    /// The field path inside the resource; empty for the resource itself.
    pub path: String,
    /// Why it is refused.
    pub reason: String,
}

impl Refusal {
    /// A refusal of `path` in `resource`.
    pub fn new(
        resource: impl Into<String>,
        path: impl Into<String>,
        reason: impl fmt::Display,
    ) -> Self {
        Self {
            resource: resource.into(),
            path: path.into(),
            reason: reason.to_string(),
        }
    }

    /// The same refusal, its path seen from `prefix` (one level up).
    #[must_use]
    pub fn within(mut self, prefix: &str) -> Self {
        self.path = proxy_core::config::join_path(prefix, &self.path);
        self
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.resource.is_empty(), self.path.is_empty()) {
            (false, false) => write!(f, "{}: {}: {}", self.resource, self.path, self.reason),
            (false, true) => write!(f, "{}: {}", self.resource, self.reason),
            (true, false) => write!(f, "{}: {}", self.path, self.reason),
            (true, true) => f.write_str(&self.reason),
        }
    }
}

/// Why one ADS stream ended; the client logs it and reconnects after a back-off.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The control plane's address is not a valid URI.
    #[error("invalid control-plane address {address:?}")]
    Address {
        /// The address as configured.
        address: String,
        /// The cause.
        #[source]
        source: tonic::transport::Error,
    },
    /// The TLS settings for the control plane cannot be built (a file that cannot
    /// be read, a bad setting).
    #[error("TLS to the control plane at {address}")]
    Tls {
        /// The address tried.
        address: String,
        /// The cause.
        #[source]
        source: proxy_tls::ConfigBuildError,
    },
    /// The connection (TCP and the HTTP/2 handshake) failed or timed out.
    #[error("cannot connect to the control plane at {address}")]
    Connect {
        /// The address tried.
        address: String,
        /// The cause.
        #[source]
        source: tonic::transport::Error,
    },
    /// The control plane refused the call or ended the stream with an error.
    #[error("the ADS stream failed")]
    Status(#[from] tonic::Status),
    /// The control plane closed the stream.
    #[error("the control plane closed the ADS stream")]
    Closed,
}
