#![doc = include_str!("../README.md")]

pub mod accept;
pub mod config;
pub mod continued;
pub mod error;
mod forward_write;
#[cfg(feature = "guomi")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "guomi")]
pub mod guomi;
pub mod identity;
pub mod material;
pub mod metrics;
#[cfg(feature = "offload")]
pub mod offload;
pub mod origin;
mod register;
pub mod rotation;
mod runtime;
pub mod san;
#[cfg(feature = "self-signed")]
pub mod self_signed;
pub mod sni;
mod upstream_verifier;

pub use accept::{Negotiated, Termination, TerminationLayer};
pub use config::{OriginationConfig, TerminationConfig};
pub use error::{ConfigBuildError, HandshakeError, MaterialError};
pub use origin::OriginationTransport;
pub use register::{register, register_with, TlsMetricsExport};
pub use runtime::TlsRuntime;

/// An error and its sources, `: `-separated, for logs and config messages.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
