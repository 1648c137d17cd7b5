//! The integration tests of `proxy-filters`, linked as one test binary: each module
//! below is one file's tests, and the modules before them are the helpers that
//! several files share.

mod common;

mod access_log;
mod api_metrics;
mod auth;
mod body_limit;
mod config;
mod fault;
mod header_rewrite;
#[cfg(feature = "lua")]
mod lua;
mod mirror;
mod overload;
mod pid_props;
mod props;
mod rate_limit;
mod rbac;
mod redis_quota;
mod tcp_proxy;
mod trace;
mod trace_props;
