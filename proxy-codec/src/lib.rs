#![doc = include_str!("../README.md")]

pub mod bolt;
pub mod config;
mod crc32;
pub mod dubbo;
#[doc(hidden)]
pub mod fuzzing;
pub mod hessian2;
mod http_map;
pub mod metrics;
pub mod mux;
pub mod protocol;
mod register;
mod service;
pub mod sniff;

pub use bolt::Bolt;
pub use dubbo::Dubbo;
pub use protocol::{DecodeError, EncodeError, Failure, FrameKind, Protocol};
pub use proxy_core::rpc::RpcInfo;
pub use register::{register, register_protocol};
pub use service::{RpcServer, RpcUpstream};
pub use sniff::Sniff;
