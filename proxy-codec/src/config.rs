//! The typed options of the multiplexed RPC protocols: [`ServerOptions`] for a
//! listener (`listeners[].protocol_options.<bolt|dubbo>`) and [`UpstreamOptions`] for
//! a cluster (`clusters[].protocol_options`).
//!
//! Both are plain data, written in code or read from a config section with
//! [`proxy_core::config::Section::parse`]; [`crate::RpcServer::new`] and
//! [`crate::RpcUpstream::new`] check them once ([`OptionsError`] names the field).
//! Sizes are `*_bytes` ([`ByteSize`]: `16MiB` or a number), durations humantime
//! (`3s`); an optional feature is on only when its field is there.
//!
//! ```
//! use proxy_codec::config::{ServerOptions, UpstreamOptions};
//! use proxy_core::config::{from_yaml, ByteSize, Section};
//!
//! // In code.
//! let server = ServerOptions {
//!     max_frame_bytes: ByteSize(16 << 20),
//!     ..ServerOptions::default()
//! };
//! // From a config section: the same value.
//! let section: Section = from_yaml("max_frame_bytes: 16MiB").unwrap();
//! assert_eq!(section.parse::<ServerOptions>().unwrap(), server);
//!
//! // Absent fields take their defaults; heartbeats are off unless asked for.
//! let upstream = Section::empty().parse::<UpstreamOptions>().unwrap();
//! assert_eq!(upstream, UpstreamOptions::default());
//! assert_eq!(upstream.heartbeat_interval, None);
//!
//! // A bad value names its field, relative to the section.
//! let bad: Section = from_yaml("max_in_flight: 0").unwrap();
//! assert_eq!(bad.parse::<UpstreamOptions>().unwrap_err().path, "max_in_flight");
//! ```

use std::{num::NonZeroU32, time::Duration};

use proxy_core::config::ByteSize;
use serde::{Deserialize, Serialize};

use crate::error::OptionsError;

/// A listener's options for one protocol: `listeners[].protocol_options.<bolt|dubbo>`.
///
/// # Example
/// ```
/// use std::{num::NonZeroU32, time::Duration};
/// use proxy_codec::config::ServerOptions;
/// use proxy_core::config::ByteSize;
///
/// let opts = ServerOptions {
///     max_frame_bytes: ByteSize(1 << 20),
///     max_in_flight: NonZeroU32::new(64).unwrap(),
///     idle_timeout: Some(Duration::from_secs(300)),
///     frame_timeout: None,
/// };
/// assert!(opts.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerOptions {
    /// The longest frame accepted, header included (default 8 MiB). A request with a
    /// longer declared length is answered with the protocol's error
    /// (`body_too_large`) and its body skipped unbuffered; the connection's other
    /// calls carry on. Also caps the answer read from the request stack: a longer
    /// one fails its call (`response_too_large`).
    #[serde(default = "default_max_frame")]
    pub max_frame_bytes: ByteSize,
    /// Requests of one connection in flight at once (default 1024); reading pauses at
    /// the limit.
    #[serde(default = "default_server_in_flight")]
    pub max_in_flight: NonZeroU32,
    /// A connection with no request in flight and no frame for this long is closed.
    /// When absent on a listener: 3 minutes, or the listener's `limits.idle_timeout`
    /// if longer (RPC clients keep connections open between bursts and ping them at
    /// their own pace, Dubbo every 60 s, so the HTTP keep-alive default would cut them
    /// off). When absent on a connection served from code ([`crate::RpcServer::serve_stream`]):
    /// none.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub idle_timeout: Option<Duration>,
    /// A frame whose first bytes arrived must be complete within this time, and a
    /// peer must take our answers within it (slow-peer defence). When absent on a
    /// listener: the listener's `limits.header_read_timeout`; from code: none.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub frame_timeout: Option<Duration>,
}

impl ServerOptions {
    /// Checks what serde cannot: sizes and durations above zero.
    ///
    /// # Errors
    /// The first bad field, by name.
    pub fn validate(&self) -> Result<(), OptionsError> {
        positive_size("max_frame_bytes", self.max_frame_bytes)?;
        positive_duration("idle_timeout", self.idle_timeout)?;
        positive_duration("frame_timeout", self.frame_timeout)
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            max_frame_bytes: default_max_frame(),
            max_in_flight: default_server_in_flight(),
            idle_timeout: None,
            frame_timeout: None,
        }
    }
}

/// A cluster's options for its protocol: `clusters[].protocol_options`.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use proxy_codec::config::UpstreamOptions;
///
/// let opts = UpstreamOptions {
///     request_timeout: Some(Duration::from_secs(3)),
///     heartbeat_interval: Some(Duration::from_secs(30)),
///     ..UpstreamOptions::default()
/// };
/// assert!(opts.validate().is_ok());
/// let zero = UpstreamOptions { heartbeat_interval: Some(Duration::ZERO), ..opts };
/// assert_eq!(zero.validate().unwrap_err().field(), "heartbeat_interval");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamOptions {
    /// Multiplexed connections per endpoint (default 1), shared by all downstream
    /// connections; requests are spread over them round-robin.
    #[serde(default = "default_connections")]
    pub connections_per_endpoint: NonZeroU32,
    /// The longest response frame accepted from an upstream, and the largest request
    /// body sent to one (default 8 MiB). A longer response fails only its own call
    /// (`response_too_large`, [`proxy_core::ProxyError::ResponseTooLarge`]): its body
    /// is skipped unbuffered and the connection, with the other calls on it, stays
    /// up. A longer request body is not sent (`body_too_large`,
    /// [`proxy_core::ProxyError::RequestTooLarge`]).
    #[serde(default = "default_max_frame")]
    pub max_frame_bytes: ByteSize,
    /// Requests in flight on one upstream connection (default 10000); more wait for
    /// a slot.
    #[serde(default = "default_upstream_in_flight")]
    pub max_in_flight: NonZeroU32,
    /// A cap on each request's wait for its response. A shorter timeout carried by
    /// the request itself (Bolt's timeout field, Dubbo's `timeout` attachment) wins.
    /// When neither is set, a call waits [`crate::mux::DEFAULT_REQUEST_TIMEOUT`]
    /// (30 s). A route's `timeout` bounds the call from outside as well.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub request_timeout: Option<Duration>,
    /// Heartbeats, off when absent: a connection that has received nothing for this
    /// long sends one, and one that has received nothing for twice this long is
    /// closed (its requests fail), so a dead peer is found without waiting for
    /// requests to time out. 30s suits Bolt and Dubbo servers.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub heartbeat_interval: Option<Duration>,
}

impl UpstreamOptions {
    /// Checks what serde cannot: sizes and durations above zero.
    ///
    /// # Errors
    /// The first bad field, by name.
    pub fn validate(&self) -> Result<(), OptionsError> {
        positive_size("max_frame_bytes", self.max_frame_bytes)?;
        positive_duration("request_timeout", self.request_timeout)?;
        positive_duration("heartbeat_interval", self.heartbeat_interval)
    }
}

impl Default for UpstreamOptions {
    fn default() -> Self {
        Self {
            connections_per_endpoint: default_connections(),
            max_frame_bytes: default_max_frame(),
            max_in_flight: default_upstream_in_flight(),
            request_timeout: None,
            heartbeat_interval: None,
        }
    }
}

fn positive_size(field: &'static str, size: ByteSize) -> Result<(), OptionsError> {
    match size.get() {
        0 => Err(OptionsError::ZeroSize { field }),
        _ => Ok(()),
    }
}

fn positive_duration(field: &'static str, d: Option<Duration>) -> Result<(), OptionsError> {
    match d {
        Some(d) if d.is_zero() => Err(OptionsError::ZeroDuration { field }),
        _ => Ok(()),
    }
}

fn default_max_frame() -> ByteSize {
    ByteSize(8 << 20)
}
fn default_server_in_flight() -> NonZeroU32 {
    NonZeroU32::new(1024).unwrap_or(NonZeroU32::MIN)
}
fn default_upstream_in_flight() -> NonZeroU32 {
    NonZeroU32::new(10_000).unwrap_or(NonZeroU32::MIN)
}
fn default_connections() -> NonZeroU32 {
    NonZeroU32::MIN
}

/// The least idle time an RPC connection on a listener gets by default.
pub(crate) const DEFAULT_IDLE: Duration = Duration::from_secs(180);

#[cfg(test)]
mod tests {
    use proxy_core::config::{from_yaml, Section};

    use super::*;

    fn section(yaml: &str) -> Section {
        from_yaml(yaml).unwrap()
    }

    #[test]
    fn absent_is_the_defaults() {
        assert_eq!(
            Section::empty().parse::<ServerOptions>().unwrap(),
            ServerOptions::default()
        );
        let up = section("{}").parse::<UpstreamOptions>().unwrap();
        assert_eq!(up, UpstreamOptions::default());
        assert_eq!(up.max_frame_bytes, ByteSize(8 << 20));
        assert_eq!(up.heartbeat_interval, None, "heartbeats are off unless set");
    }

    #[test]
    fn sizes_take_units_and_durations_humantime() {
        let s = section("max_frame_bytes: 16MiB\nidle_timeout: 5m\nframe_timeout: 250ms")
            .parse::<ServerOptions>()
            .unwrap();
        assert_eq!(s.max_frame_bytes.get(), 16 << 20);
        assert_eq!(s.idle_timeout, Some(Duration::from_secs(300)));
        assert_eq!(s.frame_timeout, Some(Duration::from_millis(250)));
        let u = section("max_frame_bytes: 4096\nheartbeat_interval: 30s")
            .parse::<UpstreamOptions>()
            .unwrap();
        assert_eq!(u.max_frame_bytes.get(), 4096);
        assert_eq!(u.heartbeat_interval, Some(Duration::from_secs(30)));
    }

    #[test]
    fn old_names_and_bad_values_name_the_field() {
        for (yaml, path) in [
            ("max_frame_length: 1024", "max_frame_length"),
            ("max_in_flight: -1", "max_in_flight"),
            ("max_frame_bytes: 12 parsecs", "max_frame_bytes"),
            ("request_timeout: soon", "request_timeout"),
            ("connections_per_endpoint: 0", "connections_per_endpoint"),
        ] {
            let err = section(yaml).parse::<UpstreamOptions>().unwrap_err();
            assert_eq!(err.path, path, "{yaml}: {err}");
        }
        let err = section("bogus: 1").parse::<ServerOptions>().unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    #[test]
    fn zeros_are_refused_not_read_as_off() {
        let s = section("max_frame_bytes: 0")
            .parse::<ServerOptions>()
            .unwrap();
        let err = proxy_core::ConfigError::from(s.validate().unwrap_err());
        assert_eq!(err.path, "max_frame_bytes");
        let u = section("heartbeat_interval: 0s")
            .parse::<UpstreamOptions>()
            .unwrap();
        assert_eq!(u.validate().unwrap_err().field(), "heartbeat_interval");
        let s = section("frame_timeout: 0s")
            .parse::<ServerOptions>()
            .unwrap();
        assert_eq!(s.validate().unwrap_err().field(), "frame_timeout");
    }
}
