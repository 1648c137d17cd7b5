#![doc = include_str!("../README.md")]

pub mod client;
mod datagram;
mod error;
pub mod handover;
mod lifecycle;
mod rollback;
pub mod server;
mod signal;
mod sock;
mod source;
pub mod wire;

pub use client::{InheritedListener, Upgrade, UpgradeClient};
pub use datagram::{DatagramSource, ForwardChannel, HandedOffDatagram, InheritedDatagram};
pub use error::UpgradeError;
pub use handover::{HandedInConnection, HandedOffConnection, Handover};
#[cfg(feature = "cli")]
pub use lifecycle::UpgradeArgs;
pub use lifecycle::{serve, Running, ServeError, UpgradeOptions};
pub use rollback::TakeBack;
pub use server::{UpgradeHandle, UpgradeServer};
pub use signal::{Reexec, TAKE_OVER_FLAG};
pub use source::ListenerSource;
