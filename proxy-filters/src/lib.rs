#![doc = include_str!("../README.md")]

pub mod access_log;
pub mod adaptive;
pub mod api_metrics;
pub mod auth;
pub mod body_limit;
pub mod config;
pub mod conn_fault;
pub mod conn_limit;
mod error;
pub mod fault;
pub mod header_rewrite;
pub mod local_rate_limit;
mod local_reply;
#[cfg(feature = "lua")]
pub mod lua;
pub mod matcher;
pub mod metrics;
pub mod mirror;
pub mod rbac;
pub mod redis_quota;
mod register;
pub mod tcp_proxy;
pub mod trace;

pub use error::{ConfigError, TcpProxyError};
pub use local_reply::LocalOr;
pub use register::register;
