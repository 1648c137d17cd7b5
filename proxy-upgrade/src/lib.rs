#![doc = include_str!("../README.md")]

pub mod client;
mod error;
pub mod handover;
pub mod server;
mod sock;
mod source;
pub mod wire;

pub use client::{InheritedListener, Upgrade, UpgradeClient};
pub use error::UpgradeError;
pub use handover::{HandedInConnection, HandedOffConnection, Handover};
pub use server::{UpgradeHandle, UpgradeServer};
pub use source::ListenerSource;
