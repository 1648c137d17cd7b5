//! The `protocol_options` sections of listeners (server side) and clusters (upstream
//! side) for the multiplexed RPC protocols.

use std::{num::NonZeroU32, time::Duration};

use serde::{Deserialize, Serialize};

/// Listener side: `listeners[].protocol_options.<bolt|dubbo>`.
///
/// ```
/// let opts: proxy_codec::config::ServerOptions =
///     serde_yaml::from_str("max_frame_length: 1048576\nmax_in_flight: 64").unwrap();
/// assert_eq!(opts.max_in_flight.get(), 64);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerOptions {
    /// The longest frame accepted, header included; a longer declared length ends the
    /// connection before the frame is buffered.
    #[serde(default = "default_max_frame", alias = "max_frame_bytes")]
    pub max_frame_length: NonZeroU32,
    /// Requests of one connection in flight at once; reading pauses at the limit.
    #[serde(default = "default_server_in_flight")]
    pub max_in_flight: NonZeroU32,
    /// A connection with no request in flight and no frame for this long is closed.
    /// When absent: 3 minutes, or the listener's `limits.idle_timeout` if longer. RPC
    /// clients keep connections open between bursts and ping them at their own pace
    /// (Dubbo every 60 s), so the HTTP keep-alive default would cut them off.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub idle_timeout: Option<Duration>,
    /// A frame whose first bytes arrived must be complete within this time, and a
    /// peer must take our answers within it (slow-peer defence; default: the
    /// listener's `limits.header_read_timeout`).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub frame_timeout: Option<Duration>,
}

impl ServerOptions {
    /// Parses a `protocol_options` section; `null` gives the defaults.
    ///
    /// # Errors
    /// The field and why, for a bad section.
    pub fn from_yaml(cfg: &serde_yaml::Value) -> Result<Self, String> {
        parse(cfg)
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            max_frame_length: default_max_frame(),
            max_in_flight: default_server_in_flight(),
            idle_timeout: None,
            frame_timeout: None,
        }
    }
}

/// Cluster side: `clusters[].protocol_options` (the cluster names one protocol).
///
/// ```
/// let opts: proxy_codec::config::UpstreamOptions =
///     serde_yaml::from_str("connections_per_endpoint: 2\nrequest_timeout: 3s").unwrap();
/// assert_eq!(opts.request_timeout, Some(std::time::Duration::from_secs(3)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamOptions {
    /// Multiplexed connections per endpoint, shared by all downstream connections;
    /// requests are spread over them round-robin.
    #[serde(default = "default_connections")]
    pub connections_per_endpoint: NonZeroU32,
    /// The longest response frame accepted from an upstream.
    #[serde(default = "default_max_frame", alias = "max_frame_bytes")]
    pub max_frame_length: NonZeroU32,
    /// Requests in flight on one upstream connection; more wait for a slot.
    #[serde(default = "default_upstream_in_flight")]
    pub max_in_flight: NonZeroU32,
    /// A cap on each request's wait for its response. A shorter timeout carried by the
    /// request itself (Bolt's timeout field) wins.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub request_timeout: Option<Duration>,
    /// A connection that has received nothing for this long sends a heartbeat; one
    /// that has received nothing for twice this long is closed (its requests fail).
    /// `null` turns heartbeats off.
    #[serde(default = "default_heartbeat", with = "humantime_serde")]
    pub heartbeat_interval: Option<Duration>,
}

impl UpstreamOptions {
    /// Parses a `protocol_options` section; `null` gives the defaults.
    ///
    /// # Errors
    /// The field and why, for a bad section.
    pub fn from_yaml(cfg: &serde_yaml::Value) -> Result<Self, String> {
        parse(cfg)
    }
}

impl Default for UpstreamOptions {
    fn default() -> Self {
        Self {
            connections_per_endpoint: default_connections(),
            max_frame_length: default_max_frame(),
            max_in_flight: default_upstream_in_flight(),
            request_timeout: None,
            heartbeat_interval: default_heartbeat(),
        }
    }
}

fn default_max_frame() -> NonZeroU32 {
    NonZeroU32::new(8 << 20).unwrap_or(NonZeroU32::MIN)
}
fn default_server_in_flight() -> NonZeroU32 {
    NonZeroU32::new(1024).unwrap_or(NonZeroU32::MIN)
}
fn default_upstream_in_flight() -> NonZeroU32 {
    NonZeroU32::new(10_000).unwrap_or(NonZeroU32::MIN)
}
fn default_heartbeat() -> Option<Duration> {
    Some(Duration::from_secs(30))
}
fn default_connections() -> NonZeroU32 {
    NonZeroU32::new(1).unwrap_or(NonZeroU32::MIN)
}

/// The least idle time an RPC connection gets by default.
pub(crate) const DEFAULT_IDLE: Duration = Duration::from_secs(180);

/// Parses an options section (`null` means all defaults), naming the bad field.
fn parse<T: serde::de::DeserializeOwned + Default>(cfg: &serde_yaml::Value) -> Result<T, String> {
    if cfg.is_null() {
        return Ok(T::default());
    }
    serde_path_to_error::deserialize(cfg.clone()).map_err(|e| {
        let path = e.path().to_string();
        format!("{path}: {}", e.into_inner())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_aliases_and_field_errors() {
        let s = ServerOptions::from_yaml(&serde_yaml::Value::Null).unwrap();
        assert_eq!(s, ServerOptions::default());
        let v: serde_yaml::Value = serde_yaml::from_str("max_frame_bytes: 1024").unwrap();
        assert_eq!(
            ServerOptions::from_yaml(&v).unwrap().max_frame_length.get(),
            1024
        );
        let v: serde_yaml::Value = serde_yaml::from_str("heartbeat_interval: null").unwrap();
        assert_eq!(
            UpstreamOptions::from_yaml(&v).unwrap().heartbeat_interval,
            None
        );
        let v: serde_yaml::Value = serde_yaml::from_str("max_in_flight: -1").unwrap();
        let err = UpstreamOptions::from_yaml(&v).unwrap_err();
        assert!(err.starts_with("max_in_flight:"), "{err}");
        let v: serde_yaml::Value = serde_yaml::from_str("bogus: 1").unwrap();
        assert!(ServerOptions::from_yaml(&v).unwrap_err().contains("bogus"));
    }
}
