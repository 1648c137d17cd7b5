//! The in-process ADS control plane and the Envoy resource builders of
//! proxy-test-support (feature `xds`), as the ADS tests use them.

#![allow(unused_imports, unreachable_pub)]

pub mod tls;

pub use proxy_test_support::xds::{resources::*, ControlPlane};
