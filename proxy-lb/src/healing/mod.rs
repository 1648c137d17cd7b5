//! Self-healing: every ejection is reported, off the request path, to a
//! [`HealingSink`]; the sink may ask for the endpoint to be removed for good.
//! [`WebhookSink`] POSTs each report as JSON to an HTTP endpoint.

mod webhook;

use std::{fmt::Debug, future::Future, net::SocketAddr, pin::Pin};

use serde::Serialize;

pub use webhook::{WebhookConfig, WebhookSink};

/// One ejection, as reported to a sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EjectionReport {
    /// The cluster.
    pub cluster: String,
    /// The ejected endpoint's address.
    pub endpoint: SocketAddr,
    /// Why it was ejected (`consecutive_5xx`, `consecutive_gateway_failure`,
    /// `success_rate`, `failure_percentage`).
    pub reason: &'static str,
    /// How many times it has been ejected (decays while it stays healthy).
    pub times_ejected: u32,
}

/// What the sink wants done with the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HealingAction {
    /// Nothing more: the endpoint comes back after its ejection time and a probe.
    #[default]
    Keep,
    /// Remove the endpoint for good (until the config changes it).
    Remove,
}

/// Why a report failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HealingError {
    /// The sink could not be reached or did not answer in time.
    #[error("healing sink unreachable")]
    Unreachable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The sink answered with a failure status.
    #[error("healing sink answered {0}")]
    Status(u16),
}

/// The future a sink returns.
pub type ReportFuture = Pin<Box<dyn Future<Output = Result<HealingAction, HealingError>> + Send>>;

/// Receives ejection reports. Called from a background task, never on the request path.
pub trait HealingSink: Debug + Send + Sync + 'static {
    /// Reports one ejection; the answer may ask for removal.
    fn report(&self, report: EjectionReport) -> ReportFuture;
}
