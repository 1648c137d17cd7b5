//! Live rotation of certificates, keys and roots.
//!
//! Material comes from files (checked for a changed modification time or size every
//! `rotation.poll_interval`) or from a [`SecretSource`] (the seam an SDS client feeds;
//! [`MemorySecrets`] is the in-memory one). A change rebuilds the TLS config from the
//! whole new material and validates it first: a certificate or key that is
//! unreadable, mismatched or expired is refused, naming the file and the reason, the
//! running material stays, and `proxy_tls_rotations_total{result="refused"}` counts
//! it. An accepted change is swapped in with `arc-swap`: the next handshake uses it.
//! Connections made with the old material keep working; after `rotation.drain` they
//! are retired at their next request boundary (HTTP/1.1 `Connection: close`, HTTP/2
//! GOAWAY).

mod drain;
mod reload;
mod secrets;

pub(crate) use drain::{serve_with_drain, Retirement};
pub(crate) use reload::{Generation, Reloadable};
pub use secrets::{MemorySecrets, OnChange, Secret, SecretSource};
