//! The integration tests of `proxy-tls`, linked as one test binary: each module
//! below is one file's tests, and the modules before them are the helpers that
//! several files share.

mod common;
#[cfg(feature = "guomi")]
#[allow(clippy::unwrap_used)]
#[path = "../src/guomi/test_pki.rs"]
mod test_pki;
#[cfg(feature = "guomi")]
mod tongsuo;

mod alpn_defaults;
mod config_errors;
mod config_limits;
#[cfg(feature = "guomi")]
mod guomi_interop;
#[cfg(feature = "guomi")]
mod guomi_interop_pki;
#[cfg(feature = "guomi")]
mod guomi_kat;
#[cfg(feature = "guomi")]
mod guomi_listener;
mod guomi_origination;
#[cfg(feature = "offload")]
mod handshake_cap;
mod mtls;
#[cfg(feature = "offload")]
mod offload;
mod origination;
mod origination_pool;
mod origination_sans;
mod rotation;
mod termination;
mod zero_rtt;
