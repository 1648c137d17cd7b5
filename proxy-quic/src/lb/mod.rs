//! The QUIC-LB load balancer: a UDP forwarder in front of a pool of QUIC servers
//! that issue QUIC-LB connection IDs (draft-ietf-quic-load-balancers-21).
//!
//! - [`parse`]: the header of a client datagram's first packet, allocation-free.
//! - [`Routes`]: server IDs to addresses, the [`Decoder`](crate::Decoder), and a
//!   Maglev table (proxy-lb's) for the 4-tuple hash of packets that do not route
//!   by connection ID: clients' Initial and 0-RTT connection IDs, unroutable and
//!   unknown ones.
//! - [`Forwarder`] ([`ForwarderBuilder`], [`ForwarderConfig`]): the sockets, with
//!   one of two return paths ([`ReturnPath`]). `relay`: one flow per client
//!   4-tuple with its own socket toward the servers, so replies (stateless resets
//!   among them) return to the client from the forwarder's address; flows expire
//!   when idle and are bounded in number; servers see the flow's socket.
//!   `encapsulated`: one socket, each datagram to a server prefixed with an
//!   [`EncapHeader`] naming the client, so servers see the client's real address.
//! - [`behind_load_balancer`] ([`BehindLb`], [`EncapsulatedSocket`]): the
//!   servers' side of `encapsulated`, a quinn `AsyncUdpSocket` that unwraps what
//!   the load balancers deliver and wraps what goes back through them.
//! - [`ForwarderStats`]: packets routed by connection ID and by hash, per reason,
//!   and every drop; [`ForwarderMetrics`] renders them for the admin page.
//!
//! # Example
//! ```
//! use proxy_quic::lb::{ForwarderBuilder, ForwarderConfig};
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let config: ForwarderConfig = serde_json::from_str(r#"{
//!     "address": "127.0.0.1:0",
//!     "configs": [{"config_id": 0, "server_id_length": 2, "nonce_length": 6,
//!                  "cid_key": "8f95f09245765f80256934e50c66207f"}],
//!     "servers": [{"server_id": "0a01", "address": "127.0.0.1:4433"},
//!                 {"server_id": "0a02", "address": "127.0.0.1:4434"}]}"#).unwrap();
//! let lb = ForwarderBuilder::try_from(&config).unwrap().bind(config.address).await.unwrap();
//! assert_ne!(lb.local_addr().port(), 0);
//! # }
//! ```

mod behind;
mod config;
mod encap;
mod encapsulated;
mod flows;
mod forwarder;
mod metrics;
mod packet;
mod stats;
mod table;
mod unwrap;

pub use behind::{
    behind_load_balancer, BehindLb, EncapsulatedSocket, EncapsulatedStats,
    DEFAULT_CLIENT_IDLE_TIMEOUT, DEFAULT_MAX_CLIENTS,
};
pub use encap::{
    is_encapsulated, EncapError, EncapHeader, ENCAP_VERSION, MAX_ENCAP_HEADER, MIN_ENCAP_HEADER,
};

pub use config::{
    BehindLbConfig, ForwarderConfig, ReturnPath, ServerEntry, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_FLOWS,
};
pub use forwarder::{Forwarder, ForwarderBuilder, MAX_DATAGRAM};
pub use metrics::{EncapsulatedMetrics, ForwarderMetrics};
pub use packet::{
    parse, Header, LongType, ParseError, MIN_INITIAL_DATAGRAM, MIN_SHORT_PACKET, VERSION_1,
    VERSION_2,
};
pub use stats::{ForwarderStats, StatsSnapshot};
pub use table::{Route, RouteBy, Routes, MAGLEV_TABLE_SIZE};
