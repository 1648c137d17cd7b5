#![doc = include_str!("../README.md")]

mod admin;
mod bootstrap;
mod client;
mod config;
mod delta;
mod error;
pub mod fuzzing;
pub mod resources;
mod secrets;
mod state;
mod status;
mod thread;
mod tls;

pub use admin::{XdsAdmin, CONFIG_DUMP_PATH};
pub use bootstrap::Bootstrap;
pub use client::XdsClient;
pub use config::{ApiType, BackoffConfig, LocalityConfig, NodeConfig, Streams, XdsConfig};
pub use error::{Refusal, StreamError};
pub use secrets::{SecretSink, TlsSecrets};
pub use status::{TypeStatus, XdsStatus};
pub use thread::XdsThread;
