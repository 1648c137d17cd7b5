//! The integration tests of `api-gateway`, linked as one test binary: each module
//! below is one file's tests, and the modules before them are the helpers that
//! several files share.

mod common;

mod gateway;
mod quota;
mod rpc;
mod trace_metrics;
mod upgrade;
mod xds;
