//! QUIC for network proxies. This first part is QUIC-LB
//! ([draft-ietf-quic-load-balancers-21]): connection IDs that carry the server's ID,
//! so that a load balancer routes every packet of a connection to its server even
//! after the client's address changes.
//!
//! - [`CidFormat`]: one configuration's format (config rotation bits, server ID
//!   length, nonce length, key, length self-description), encoding and decoding in
//!   all three modes: plaintext, single-pass AES-128-ECB (server ID + nonce = 16
//!   octets) and four-pass (any other length).
//! - [`Decoder`]: the load balancer's side, several configs at once (a rotation's old
//!   and new), and the unroutable cases ([`Unroutable`]) that fall back to the
//!   4-tuple.
//! - [`QuicLbServer`] and [`CidGenerator`]: the server's side, one generator per
//!   [`NonceSpace`] (per process and worker) so that no two generators issue the same
//!   connection ID; [`CidGenerator`] is a quinn `ConnectionIdGenerator`.
//! - [`QuicLbConfig`] and [`DecoderConfig`]: the config sections, validated into the
//!   above with errors that name the field.
//! - [`h3`](mod@h3): HTTP/3 termination into the same request stack as the TCP
//!   listeners (`H3Listener`), and the `alt-svc` layer that advertises it. It loads
//!   certificates with proxy-tls, a deliberate sideways dependency.
//! - [`lb`]: the load balancer, a UDP forwarder that routes each client datagram by
//!   the server ID in its destination connection ID, or by a consistent hash of the
//!   4-tuple when there is none. It uses proxy-lb's Maglev table, a deliberate
//!   sideways dependency: one consistent hash for the whole framework. In its
//!   `encapsulated` mode a header names the client, and servers on a
//!   [`lb::behind_load_balancer`] socket see the client's real address.
//! - [`stream_proxy`]: QUIC streams proxied to TCP (raw QUIC, custom ALPN): each
//!   bidirectional stream to an endpoint of a proxy-core cluster, with the TCP
//!   proxy's half-close, idle timeout and byte counts.
//! - [`section`]: the top-level `quic` config section (HTTP/3 listeners serving a
//!   TCP listener's routes and filters, following reloads), started on a running
//!   `proxy_core::Server`; with the `upgrade` feature, `section::QuicRun` runs it
//!   beside a `proxy_upgrade::serve` server and hands it over in hot upgrades.
//!
//! # Example
//! ```
//! use proxy_quic::{Decoder, DecoderConfig, NonceSpace, QuicLbConfig, QuicLbServer};
//!
//! let server: QuicLbConfig = serde_json::from_str(r#"{
//!     "config_id": 1, "server_id": "31441a", "nonce_length": 5,
//!     "cid_key": "fdf726a9893ec05c0632d3956680baf0",
//!     "first_octet_encodes_cid_length": true}"#).unwrap();
//! let server = QuicLbServer::try_from(&server).unwrap();
//! let mut generator = server.generator(NonceSpace::new(0, 4).unwrap()).unwrap();
//! let cid = generator.next_cid();
//!
//! let lb: DecoderConfig = serde_json::from_str(r#"{"configs": [{
//!     "config_id": 1, "server_id_length": 3, "nonce_length": 5,
//!     "cid_key": "fdf726a9893ec05c0632d3956680baf0"}]}"#).unwrap();
//! let decoder = Decoder::try_from(&lb).unwrap();
//! assert_eq!(decoder.server_id(cid.as_bytes()), Some(server.server_id()));
//! ```
//!
//! [draft-ietf-quic-load-balancers-21]: https://datatracker.ietf.org/doc/draft-ietf-quic-load-balancers/21/

mod cipher;
mod config;
mod decoder;
mod error;
mod format;
mod generator;
pub mod h3;
pub mod handoff;
mod hex;
pub mod lb;
mod nonce_space;
pub mod section;
pub mod stream_proxy;
mod types;

pub use config::{CidFormatConfig, DecoderConfig, QuicLbConfig};
pub use decoder::{Decoded, Decoder, Unroutable};
pub use error::CidError;
pub use format::CidFormat;
pub use generator::{CidGenerator, QuicLbServer, MIN_COUNTER_BITS};
pub use nonce_space::NonceSpace;
pub use types::{Cid, CidKey, ConfigId, Nonce, ServerId, MAX_CID_LEN};
