//! The load balancer's config section.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use proxy_core::ConfigError;
use serde::{Deserialize, Serialize};

use super::table::Routes;
use crate::{CidFormatConfig, Decoder, DecoderConfig, ServerId};

/// The default of [`ForwarderConfig::idle_timeout`]: 30 seconds, quinn's default
/// idle timeout.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The default of [`ForwarderConfig::max_flows`].
pub const DEFAULT_MAX_FLOWS: NonZeroU32 = match NonZeroU32::new(16_384) {
    Some(n) => n,
    None => NonZeroU32::MIN,
};

/// The QUIC-LB forwarder's config section.
///
/// ```yaml
/// address: 0.0.0.0:443            # where clients send
/// configs:                        # the connection ID formats, as DecoderConfig
///   - {config_id: 0, server_id_length: 2, nonce_length: 6, cid_key: 8f95f09245765f80256934e50c66207f}
/// servers:
///   - {server_id: 0a01, address: 10.0.0.1:4433}
///   - {server_id: 0a02, address: 10.0.0.2:4433}
/// idle_timeout: 30s               # optional: a flow with no packet for this long is removed
/// max_flows: 16384                # optional: client 4-tuples at once (each holds a socket)
/// max_flows_per_ip: 64            # optional, absent = no per-IP limit
/// return_path: relay              # optional, default relay; or encapsulated
/// ```
///
/// # Example
/// ```
/// use proxy_quic::lb::{ForwarderConfig, Routes};
/// let config: ForwarderConfig = serde_json::from_str(r#"{
///     "address": "127.0.0.1:0",
///     "configs": [{"config_id": 0, "server_id_length": 2, "nonce_length": 6}],
///     "servers": [{"server_id": "0a01", "address": "127.0.0.1:4433"},
///                 {"server_id": "0a02", "address": "127.0.0.1:4434"}],
///     "idle_timeout": "10s"}"#).unwrap();
/// assert_eq!(Routes::try_from(&config).unwrap().servers().count(), 2);
///
/// let mut bad = config.clone();
/// bad.servers[1].server_id = proxy_quic::ServerId::from_hex("0a").unwrap();
/// assert_eq!(Routes::try_from(&bad).unwrap_err().path, "servers[1].server_id");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwarderConfig {
    /// The address clients send to.
    pub address: SocketAddr,
    /// The connection ID formats in use (as [`DecoderConfig::configs`]).
    #[serde(default)]
    pub configs: Vec<CidFormatConfig>,
    /// The servers behind the load balancer.
    pub servers: Vec<ServerEntry>,
    /// How long a flow (a client 4-tuple and its socket toward the servers) lives
    /// without a packet either way.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// The most flows at once; a new 4-tuple past it is dropped and counted. Each
    /// flow holds a socket: keep it under the process's file descriptor limit.
    #[serde(default = "default_max_flows")]
    pub max_flows: NonZeroU32,
    /// The most flows of one source IP address; absent means no such limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_flows_per_ip: Option<NonZeroU32>,
    /// How servers' datagrams get back to clients, and so what servers see as the
    /// client's address (default `relay`).
    #[serde(default)]
    pub return_path: ReturnPath,
}

/// How the forwarder carries the servers' datagrams back to clients.
///
/// # Example
/// ```
/// use proxy_quic::lb::ReturnPath;
/// let p: ReturnPath = serde_json::from_str(r#""encapsulated""#).unwrap();
/// assert_eq!(p, ReturnPath::Encapsulated);
/// assert_eq!(ReturnPath::default(), ReturnPath::Relay);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReturnPath {
    /// One flow (a socket of its own toward the servers) per client 4-tuple: any
    /// QUIC server works unmodified, and sees the flow's socket as the client.
    #[default]
    Relay,
    /// One socket: each datagram to a server carries an
    /// [`EncapHeader`](super::EncapHeader) naming the client; servers (quinn
    /// endpoints on a [`behind_load_balancer`](super::behind_load_balancer)
    /// socket) see the client's real address and send their datagrams back wrapped
    /// the same way, through this socket. No flow table.
    Encapsulated,
}

/// One server: its QUIC-LB server ID and its address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerEntry {
    /// The server ID, hex, as in the server's own [`QuicLbConfig`](crate::QuicLbConfig).
    pub server_id: ServerId,
    /// Where its QUIC endpoint listens.
    pub address: SocketAddr,
}

fn default_idle_timeout() -> Duration {
    DEFAULT_IDLE_TIMEOUT
}

fn default_max_flows() -> NonZeroU32 {
    DEFAULT_MAX_FLOWS
}

impl TryFrom<&ForwarderConfig> for Routes {
    type Error = ConfigError;

    fn try_from(config: &ForwarderConfig) -> Result<Self, ConfigError> {
        let decoder = Decoder::try_from(&DecoderConfig {
            configs: config.configs.clone(),
        })?;
        Routes::new(
            decoder,
            config.servers.iter().map(|s| (s.server_id, s.address)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors() {
        let c: ForwarderConfig = serde_json::from_str(
            r#"{"address": "127.0.0.1:0",
                "configs": [{"config_id": 0, "server_id_length": 2, "nonce_length": 6}],
                "servers": [{"server_id": "0a01", "address": "127.0.0.1:4433"}]}"#,
        )
        .unwrap();
        assert_eq!(c.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        assert_eq!(c.max_flows, DEFAULT_MAX_FLOWS);
        assert_eq!(c.max_flows_per_ip, None);
        assert_eq!(c.return_path, ReturnPath::Relay);
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<ForwarderConfig>(&text).unwrap(), c);

        let mut bad = c.clone();
        bad.configs[0].nonce_length = 2;
        assert_eq!(
            Routes::try_from(&bad).unwrap_err().path,
            "configs[0].nonce_length"
        );
        let e = serde_json::from_str::<ForwarderConfig>(
            r#"{"address": "127.0.0.1:0", "servers": [], "max_flows": 0}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("nonzero"), "{e}");
        let encapsulated = serde_json::from_str::<ForwarderConfig>(
            r#"{"address": "127.0.0.1:0", "servers": [], "return_path": "encapsulated"}"#,
        )
        .unwrap();
        assert_eq!(encapsulated.return_path, ReturnPath::Encapsulated);
        let e = serde_json::from_str::<ForwarderConfig>(
            r#"{"address": "127.0.0.1:0", "servers": [], "return_path": "dsr"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown variant `dsr`"), "{e}");
        let e = serde_json::from_str::<ForwarderConfig>(
            r#"{"address": "127.0.0.1:0", "servers": [], "listen": "x"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `listen`"), "{e}");

        let zero = ForwarderConfig {
            idle_timeout: Duration::ZERO,
            ..c
        };
        let e = super::super::ForwarderBuilder::try_from(&zero).unwrap_err();
        assert_eq!(e.path, "idle_timeout");
    }
}
