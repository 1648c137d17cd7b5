//! Cluster extensions: what watches a cluster's endpoints (outlier detection,
//! active health checks) and flips their health flags.

use std::{fmt, sync::Arc, time::Duration};

use http::StatusCode;

use super::Endpoint;

/// How one attempt to an endpoint ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The endpoint answered with this status.
    Response(StatusCode),
    /// No connection could be made (refused, timed out, transport handshake failed,
    /// or the endpoint's connection limit was reached).
    ConnectFailure,
    /// The connection failed after the request was sent, before a full answer.
    Reset,
    /// No answer within the route's timeout.
    Timeout,
}

impl Outcome {
    /// Whether the outcome counts as a gateway failure (502, 503, 504, connect
    /// failure, reset or timeout), as outlier detection sees it.
    pub fn is_gateway_failure(self) -> bool {
        match self {
            Self::Response(s) => matches!(s.as_u16(), 502..=504),
            Self::ConnectFailure | Self::Reset | Self::Timeout => true,
        }
    }

    /// Whether the outcome is an error: a 5xx or any failure to get an answer.
    pub fn is_error(self) -> bool {
        match self {
            Self::Response(s) => s.is_server_error(),
            Self::ConnectFailure | Self::Reset | Self::Timeout => true,
        }
    }
}

/// A cluster as an extension sees it when activated.
#[derive(Debug, Clone)]
pub struct ClusterInfo {
    /// The cluster name.
    pub name: Arc<str>,
    /// The endpoints, in config order.
    pub endpoints: Arc<[Arc<Endpoint>]>,
}

/// Watches a cluster: told of every attempt's outcome, activated when the cluster
/// goes live. Registered by name ([`crate::Registry::register_cluster_extension`])
/// and named in `clusters[].extensions`.
///
/// On reload, a cluster whose extension section is unchanged keeps the instance and
/// activates it again with the new endpoint set; an instance no longer used is told
/// so ([`ClusterExtension::retire`]) when the new snapshot goes live, and must then
/// give back the health flags it set, since the endpoints it watched may live on in
/// the new cluster. It is dropped later and must stop its background tasks then too
/// (hold a `Weak`, or a drop guard).
///
/// # Example
/// ```
/// use std::{sync::{Arc, atomic::{AtomicU64, Ordering}}, time::Duration};
/// use proxy_core::cluster::{ClusterExtension, Outcome};
/// use proxy_core::Endpoint;
///
/// /// Counts 5xx answers.
/// #[derive(Debug, Default)]
/// struct Count5xx(AtomicU64);
/// impl ClusterExtension for Count5xx {
///     fn on_outcome(&self, _e: &Arc<Endpoint>, outcome: &Outcome, _latency: Duration) {
///         if outcome.is_error() {
///             self.0.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
/// ```
pub trait ClusterExtension: fmt::Debug + Send + Sync + 'static {
    /// The cluster went live (called within the server's runtime: spawn tasks here),
    /// or its endpoint set changed on reload. Called again for every live snapshot.
    fn activate(&self, cluster: &ClusterInfo) {
        let _ = cluster;
    }

    /// Each attempt's outcome, on the request path: keep it to atomics.
    fn on_outcome(&self, endpoint: &Arc<Endpoint>, outcome: &Outcome, latency: Duration) {
        let _ = (endpoint, outcome, latency);
    }

    /// This instance watches the cluster no more: a reload removed or changed its
    /// section and the snapshot without it went live (called within the server's
    /// runtime, before the new snapshot's extensions are activated). Clear the health
    /// flags it set and stop its background work. Requests of the old snapshot may
    /// still be in flight, so the instance can be called after this; it is dropped
    /// later, when the old snapshot is.
    fn retire(&self) {}

    /// A JSON view for the admin `/clusters` page.
    fn status(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}
