//! The load balancer's config section.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use proxy_core::ConfigError;
use serde::{Deserialize, Serialize};

use super::behind::{BehindLb, DEFAULT_CLIENT_IDLE_TIMEOUT, DEFAULT_MAX_CLIENTS};
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
///
/// In encapsulated mode a server receives the client's datagram behind a header
/// naming the client, and sends its own back the same way:
/// ```
/// use proxy_quic::{CidFormat, ConfigId, Decoder, ServerId};
/// use proxy_quic::lb::{EncapHeader, ForwarderBuilder, ReturnPath, Routes};
/// use tokio::net::UdpSocket;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let mut decoder = Decoder::new();
/// decoder.insert(CidFormat::new(ConfigId::new(0).unwrap(), 2, 6, None, false).unwrap());
/// let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
/// let sid = ServerId::from_hex("0a01").unwrap();
/// let routes = Routes::new(decoder, [(sid, server.local_addr().unwrap())]).unwrap();
/// let lb = ForwarderBuilder::new(routes)
///     .return_path(ReturnPath::Encapsulated)
///     .bind("127.0.0.1:0".parse().unwrap())
///     .await
///     .unwrap();
///
/// let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
/// let packet = [0x40; 32]; // a short-header packet
/// client.send_to(&packet, lb.local_addr()).await.unwrap();
/// let mut buf = [0u8; 2048];
/// let (n, from) = server.recv_from(&mut buf).await.unwrap();
/// let (header, datagram) = EncapHeader::decode(&buf[..n]).unwrap();
/// assert_eq!((header.client, header.lb, datagram), (client.local_addr().unwrap(), Some(from), &packet[..]));
///
/// let reply = EncapHeader { client: header.client, lb: None };
/// let mut out = vec![0; reply.wire_len()];
/// reply.write(&mut out).unwrap();
/// out.extend_from_slice(b"answer");
/// server.send_to(&out, lb.local_addr()).await.unwrap();
/// let (n, from) = client.recv_from(&mut buf).await.unwrap();
/// assert_eq!((&buf[..n], from), (&b"answer"[..], lb.local_addr()));
/// # }
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

/// The servers' side of [`ReturnPath::Encapsulated`]: the section of a QUIC
/// listener behind the forwarder, built into a [`BehindLb`] with
/// `BehindLb::try_from(&config)`.
///
/// ```yaml
/// load_balancers: [10.0.0.10:443]   # the forwarders' listening addresses
/// direct_clients: true              # optional, default true; false drops others
/// client_idle_timeout: 5m           # optional, default 5m
/// max_clients: 65536                # optional, default 65536
/// ```
///
/// # Example
/// ```
/// use proxy_quic::lb::{BehindLb, BehindLbConfig};
/// let config: BehindLbConfig = serde_json::from_str(
///     r#"{"load_balancers": ["10.0.0.10:443"], "direct_clients": false}"#).unwrap();
/// assert!(BehindLb::try_from(&config).is_ok());
/// let none: BehindLbConfig = serde_json::from_str(r#"{"load_balancers": []}"#).unwrap();
/// assert_eq!(BehindLb::try_from(&none).unwrap_err().path, "load_balancers");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BehindLbConfig {
    /// The addresses the forwarders send from (their listening addresses).
    pub load_balancers: Vec<SocketAddr>,
    /// Whether clients that talk to the server directly are served (default true).
    #[serde(default = "default_direct_clients")]
    pub direct_clients: bool,
    /// How long a client learned through a forwarder is remembered without a
    /// datagram from it.
    #[serde(default = "default_client_idle", with = "humantime_serde")]
    pub client_idle_timeout: Duration,
    /// The most clients remembered at once.
    #[serde(default = "default_max_clients")]
    pub max_clients: NonZeroU32,
}

fn default_direct_clients() -> bool {
    true
}

fn default_client_idle() -> Duration {
    DEFAULT_CLIENT_IDLE_TIMEOUT
}

fn default_max_clients() -> NonZeroU32 {
    u32::try_from(DEFAULT_MAX_CLIENTS)
        .ok()
        .and_then(NonZeroU32::new)
        .unwrap_or(NonZeroU32::MIN)
}

impl TryFrom<&BehindLbConfig> for BehindLb {
    type Error = ConfigError;

    fn try_from(config: &BehindLbConfig) -> Result<Self, ConfigError> {
        if config.load_balancers.is_empty() {
            return Err(ConfigError::new(
                "load_balancers",
                "at least one load balancer is needed",
            ));
        }
        if config.client_idle_timeout.is_zero() {
            return Err(ConfigError::new(
                "client_idle_timeout",
                "must be more than zero: replies would go out unwrapped",
            ));
        }
        let max = usize::try_from(config.max_clients.get())
            .ok()
            .and_then(NonZeroUsize::new)
            .unwrap_or(NonZeroUsize::MIN);
        Ok(BehindLb::new(config.load_balancers.iter().copied())
            .direct_clients(config.direct_clients)
            .client_idle_timeout(config.client_idle_timeout)
            .max_clients(max))
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

    #[test]
    fn behind_lb_defaults_and_errors() {
        let c: BehindLbConfig =
            serde_json::from_str(r#"{"load_balancers": ["10.0.0.10:443", "[::1]:443"]}"#).unwrap();
        assert!(c.direct_clients);
        assert_eq!(c.client_idle_timeout, DEFAULT_CLIENT_IDLE_TIMEOUT);
        assert_eq!(c.max_clients.get(), 65_536);
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<BehindLbConfig>(&text).unwrap(), c);
        assert!(BehindLb::try_from(&c).is_ok());
        let zero = BehindLbConfig {
            client_idle_timeout: Duration::ZERO,
            ..c
        };
        assert_eq!(
            BehindLb::try_from(&zero).unwrap_err().path,
            "client_idle_timeout"
        );
        let e =
            serde_json::from_str::<BehindLbConfig>(r#"{"load_balancers": [], "max_clients": 0}"#)
                .unwrap_err();
        assert!(e.to_string().contains("nonzero"), "{e}");
        let e = serde_json::from_str::<BehindLbConfig>(r#"{"lbs": []}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `lbs`"), "{e}");
    }
}
