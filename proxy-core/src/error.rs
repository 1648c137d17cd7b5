//! Error types shared by the proxy path.

use std::{fmt, net::SocketAddr, sync::Arc};

use http::StatusCode;

/// The boxed error passed between services.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A configuration error: which field, and why.
///
/// Every config mistake, whichever crate owns the section, reads `path: reason`, the
/// path from the document's root (`clusters[0].lb.config.table_size`). A capability's
/// factory returns paths relative to its own section; core prefixes them
/// ([`ConfigError::within`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.display())]
pub struct ConfigError {
    /// The field path, e.g. `listeners[0].virtual_hosts[1].routes[3].match.path`;
    /// empty for the document or section itself.
    pub path: String,
    /// Why the value is refused.
    pub reason: String,
}

impl ConfigError {
    /// A new error at `path`.
    pub fn new(path: impl Into<String>, reason: impl fmt::Display) -> Self {
        Self {
            path: path.into(),
            reason: reason.to_string(),
        }
    }

    /// The same error seen from `prefix`: a section's error placed in the document.
    ///
    /// # Example
    /// ```
    /// let e = proxy_core::ConfigError::new("table_size", "must be prime");
    /// assert_eq!(e.within("clusters[0].lb.config").to_string(),
    ///            "clusters[0].lb.config.table_size: must be prime");
    /// ```
    #[must_use]
    pub fn within(self, prefix: &str) -> Self {
        Self {
            path: crate::config::join_path(prefix, &self.path),
            reason: self.reason,
        }
    }

    fn display(&self) -> String {
        if self.path.is_empty() {
            self.reason.clone()
        } else {
            format!("{}: {}", self.path, self.reason)
        }
    }
}

/// Why the proxy itself answered instead of the upstream. Each kind maps to one status
/// code and one metric label.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// No route matched the request.
    #[error("no route matched")]
    NoRoute,
    /// The route names a cluster with no endpoints.
    #[error("no endpoints in cluster {cluster}")]
    NoEndpoints {
        /// The cluster name.
        cluster: Arc<str>,
    },
    /// The TCP connection to the upstream could not be made.
    #[error("connect to {addr} failed")]
    Connect {
        /// The endpoint address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The upstream did not answer in time.
    #[error("upstream timed out")]
    Timeout,
    /// The upstream pool is at its connection limit.
    #[error("upstream connection limit reached for {addr}")]
    Overflow {
        /// The endpoint address.
        addr: SocketAddr,
    },
    /// A cluster's circuit breaker is full (`circuit_breakers.max_requests` in
    /// flight): the request was not sent. Reason `overflow`, detail the limit.
    #[error("cluster {cluster} is at its {limit} limit")]
    ClusterOverflow {
        /// The cluster name.
        cluster: Arc<str>,
        /// The limit reached (`max_requests`).
        limit: &'static str,
    },
    /// The upstream closed or reset the connection before its answer was complete.
    #[error("upstream connection failed")]
    Upstream {
        /// Whether the request may have reached the upstream application.
        request_sent: bool,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// The upstream's answer broke its protocol: an HTTP/1.1 head or body framing that
    /// cannot be read (a garbage status line, differing `Content-Length`s, a malformed
    /// chunk), or HTTP/2 frames its connection refused. The request was sent. Reason
    /// `upstream_protocol_error`, status 502; the endpoint is charged as for a reset,
    /// and a retry policy's `reset` condition covers it.
    #[error("invalid response from upstream")]
    UpstreamProtocol {
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// A request body longer than the cluster allows (an RPC protocol's
    /// `max_frame_bytes`): it was not sent. Reason `body_too_large`, as for a request
    /// over the listener's own limit.
    #[error("request body of {len} bytes exceeds the upstream limit of {max}")]
    RequestTooLarge {
        /// The body's length, or the bytes read before the limit was passed.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The upstream answered with a response longer than the cluster allows (an RPC
    /// protocol's `max_frame_bytes`): the response was dropped and only this call
    /// fails. Reason `response_too_large`; the endpoint answered, so it is neither a
    /// reset nor retried.
    #[error("upstream response of {len} bytes exceeds the limit of {max}")]
    ResponseTooLarge {
        /// The length the response declared.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The client's request body stopped arriving: no byte of it for the listener's
    /// stream idle timeout. Reason `request_timeout`, status 408, as for a head
    /// that does not arrive in time.
    #[error("request body stopped arriving")]
    RequestTimeout,
    /// The downstream request was malformed.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// A filter of the request stack failed with an error the proxy does not know.
    #[error("internal error")]
    Internal,
    /// The request's `Via` already names this proxy (its listener's `via`): it has
    /// been forwarded here before and would go round again. Reason `forwarding_loop`,
    /// status 508 (Loop Detected); nothing is sent upstream.
    #[error("forwarding loop: the request has passed this proxy before")]
    ForwardingLoop,
}

impl ProxyError {
    /// A finer class of the failure, for the `x-proxy-error-detail` header and logs:
    /// why a connect failed (`connection_refused`, `connect_timeout`, `unreachable`,
    /// or a transport's class such as `tls_unknown_issuer`), or which circuit breaker
    /// of a cluster was full (`max_requests`). Never carries secrets.
    pub fn detail(&self) -> Option<&'static str> {
        let source = match self {
            Self::Connect { source, .. } => source,
            Self::ClusterOverflow { limit, .. } => return Some(limit),
            _ => return None,
        };
        // An `io::Error` wrapping a transport's error hides it from `source()`.
        let start: &(dyn std::error::Error + 'static) = match source.get_ref() {
            Some(inner) => inner,
            None => source,
        };
        if let Some(t) = find_cause::<crate::upstream::TransportError>(start) {
            return Some(t.class());
        }
        Some(match source.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection_refused",
            std::io::ErrorKind::TimedOut => "connect_timeout",
            std::io::ErrorKind::HostUnreachable | std::io::ErrorKind::NetworkUnreachable => {
                "unreachable"
            }
            std::io::ErrorKind::ConnectionReset => "connection_reset",
            std::io::ErrorKind::Other => "transport",
            _ => "connect_error",
        })
    }

    /// The status code the proxy answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::NoEndpoints { .. }
            | Self::Connect { .. }
            | Self::Overflow { .. }
            | Self::ClusterOverflow { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Upstream { .. }
            | Self::UpstreamProtocol { .. }
            | Self::ResponseTooLarge { .. } => StatusCode::BAD_GATEWAY,
            Self::RequestTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::ForwardingLoop => StatusCode::LOOP_DETECTED,
        }
    }

    /// A short machine-readable reason, used as a metric label and in the
    /// `x-proxy-error` response header.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoRoute => "no_route",
            Self::NoEndpoints { .. } => "no_endpoints",
            Self::Connect { .. } => "connect_failure",
            Self::Timeout => "upstream_timeout",
            Self::Overflow { .. } | Self::ClusterOverflow { .. } => "overflow",
            Self::Upstream { .. } => "upstream_reset",
            Self::UpstreamProtocol { .. } => "upstream_protocol_error",
            Self::RequestTooLarge { .. } => "body_too_large",
            Self::ResponseTooLarge { .. } => "response_too_large",
            Self::RequestTimeout => "request_timeout",
            Self::BadRequest(_) => "bad_request",
            Self::Internal => "internal",
            Self::ForwardingLoop => "forwarding_loop",
        }
    }

    /// Finds a `ProxyError` in an error's source chain.
    pub fn find<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a ProxyError> {
        find_cause(err)
    }
}

/// The first `T` among `err` and the errors of its source chain.
pub(crate) fn find_cause<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        cur = e.source();
    }
    None
}
