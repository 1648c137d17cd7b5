#![doc = include_str!("../README.md")]

pub mod bolt;
pub mod config;
mod crc32;
pub mod dubbo;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod hessian2;
mod http_map;
pub mod io;
pub mod metrics;
pub mod mux;
pub mod protocol;
mod register;
mod server;
pub mod sniff;
pub mod transform;
mod upstream;

pub use bolt::Bolt;
pub use dubbo::Dubbo;
pub use protocol::{DecodeError, EncodeError, Failure, FrameHead, FrameKind, Protocol};
pub use proxy_core::rpc::RpcInfo;
pub use register::{register, register_protocol};
pub use server::RpcServer;
pub use sniff::Sniff;
pub use upstream::RpcUpstream;
