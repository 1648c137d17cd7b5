//! # proxy-core
//!
//! Listeners, the connection and request pipeline as tower services, the router,
//! clusters with upstream connection pools, the config model with validation and live
//! swap, the admin endpoint, metrics and tracing: the base every capability crate of
//! the proxy framework plugs into.

pub mod config;
mod error;
pub mod metrics;
pub mod router;

pub use error::{BoxError, ConfigError, ProxyError};
