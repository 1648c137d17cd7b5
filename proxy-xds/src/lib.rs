#![doc = include_str!("../README.md")]

mod client;
mod config;
mod delta;
mod error;
pub mod fuzzing;
pub mod resources;
mod secrets;
mod state;
mod thread;
mod tls;

pub use client::{XdsClient, XdsStatus};
pub use config::{ApiType, BackoffConfig, LocalityConfig, NodeConfig, Streams, XdsConfig};
pub use error::{Refusal, StreamError};
pub use secrets::{SecretSink, TlsSecrets};
pub use thread::XdsThread;
