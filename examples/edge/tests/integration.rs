//! The integration tests of `edge`, linked as one test binary: each module
//! below is one file's tests, and the modules before them are the helpers that
//! several files share.

#[path = "../../../proxy-quic/tests/aioquic_support/mod.rs"]
mod aioquic_support;
mod common;

mod config;
mod default_run;
mod failover;
mod interop;
mod upgrade;
mod upgrade_h3;
