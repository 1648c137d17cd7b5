#![doc = include_str!("../README.md")]

pub mod client;
mod datagram;
mod error;
pub mod handover;
mod rollback;
pub mod server;
mod sock;
mod source;
pub mod wire;

pub use client::{InheritedListener, Upgrade, UpgradeClient};
pub use datagram::{DatagramSource, ForwardChannel, HandedOffDatagram, InheritedDatagram};
pub use error::UpgradeError;
pub use handover::{HandedInConnection, HandedOffConnection, Handover};
pub use rollback::TakeBack;
pub use server::{UpgradeHandle, UpgradeServer};
pub use source::ListenerSource;
