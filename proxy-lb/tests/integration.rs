//! The integration tests of `proxy-lb`, linked as one test binary: each module
//! below is one file's tests, and the modules before them are the helpers that
//! several files share.

mod common_resilience;

mod adversarial;
mod balancers;
mod config_errors;
mod hash_stability;
mod health;
mod latency;
mod lifetimes;
mod outlier;
mod props;
mod retired_state;
mod steering;
mod zone;
