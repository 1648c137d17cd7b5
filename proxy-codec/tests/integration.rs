//! The integration tests of `proxy-codec`, linked as one test binary: each module
//! below is one file's tests, and the modules before them are the helpers that
//! several files share.

#[allow(clippy::unwrap_used)]
#[path = "interop/peers.rs"]
mod peers;
#[allow(clippy::unwrap_used)]
#[path = "interop/proxy.rs"]
mod proxy;

mod codec;
mod config;
mod drain;
mod interop;
mod interop_drain;
mod mux;
mod oversized;
mod props;
mod routing;
mod transform;
