#![doc = include_str!("../README.md")]

mod backend;
mod error;
pub mod hash_balancer;
pub mod hash_policy;
pub mod healing;
pub mod health;
pub mod layer;
pub mod least_request;
pub mod maglev;
pub mod metrics;
pub mod outlier;
pub mod random;
mod register;
pub mod ring_hash;
pub mod round_robin;
pub mod route_hash;
pub mod steering;
mod table;
pub mod zone;

pub use backend::{Backend, StaticBackend};
pub use error::ConfigError;
pub use register::register;
