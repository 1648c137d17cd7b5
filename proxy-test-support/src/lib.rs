//! Helpers shared by the integration tests of the workspace's crates, so that each
//! crate's `tests/` holds its tests and what only it needs, not another copy of an
//! upstream server or a client.
//!
//! - [`ports`]: loopback addresses: a free port, a closed port.
//! - [`upstream`]: in-process upstream servers on `127.0.0.1:0`, each on a thread of
//!   its own and recording what it saw: HTTP (HTTP/1.1 and h2c) echo and scripted
//!   servers, a silent sink, raw TCP servers; stopped when their handle drops.
//! - [`server`]: a `proxy_core::Server` run in-process from YAML with a `Registry`.
//! - [`client`]: HTTP/1.1 and h2c clients (hyper), and a raw-bytes client.
//! - [`prometheus`]: samples read from Prometheus text.
//! - [`eventually`](mod@eventually), [`timeout`]: polling and deadlines.
//! - [`tools`]: external clients (curl, h2load, openssl), skipped loudly when absent.
//! - [`python`]: the test-deps directory, and a Python that can import a test
//!   client's module (tongsuopy, aioquic, ...), skipped loudly when absent.
//! - [`redis`]: a real `redis-server` on a loopback port.
//! - [`pki`], [`temp`]: a test PKI written to a temporary directory.
//! - [`yaml`]: the YAML of the common listener and cluster shapes.
//! - `rpc` (feature `codec`): Bolt and Dubbo peers.
//! - `jwt` (feature `jwt`): signing keys, JWKs and tokens for JWT auth tests.
//! - `xds` (feature `xds`): an in-process ADS control plane and Envoy resources.
//!
//! Helpers that set up a test panic with a message when the setup fails: a failed
//! setup should stop the test loudly.
//!
//! Used only as a dev-dependency:
//! `proxy-test-support = { path = "../proxy-test-support" }`.

pub mod client;
pub mod eventually;
pub mod hot_upgrade;
#[cfg(feature = "jwt")]
pub mod jwt;
pub mod pki;
pub mod ports;
pub mod prometheus;
pub mod python;
pub mod redis;
#[cfg(feature = "codec")]
pub mod rpc;
pub mod server;
pub mod temp;
pub mod timeout;
pub mod tools;
pub mod upstream;
#[cfg(feature = "xds")]
pub mod xds;
pub mod yaml;

pub use eventually::{eventually, eventually_async};
pub use ports::{closed_port, free_addr};
pub use server::TestServer;
pub use timeout::with_timeout;
pub use upstream::{Seen, Upstream};

/// The error type of the fallible helpers.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
