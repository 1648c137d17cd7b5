//! The `quic_stream_proxy` config section.

use std::{net::SocketAddr, num::NonZeroU32, sync::Arc, time::Duration};

use proxy_core::{cluster::Cluster, config::ByteSize, ConfigError};
use serde::{Deserialize, Serialize};

use super::listener::{
    StreamProxyBuilder, DEFAULT_BUFFER_BYTES, DEFAULT_DRAIN_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONCURRENT_STREAMS,
};

/// The section of a QUIC stream to TCP proxy. Certificates are not part of it:
/// the caller passes the rustls config (as for an `H3Listener`).
///
/// ```yaml
/// address: 0.0.0.0:4433
/// alpn: [my-proto]              # at least one
/// cluster: backend              # every stream goes to an endpoint of it
/// idle_timeout: 5m              # optional, default 1h
/// max_concurrent_streams: 100   # optional, per connection
/// buffer_bytes: 16KiB           # optional, per direction, 512 B - 1 MiB
/// drain_timeout: 10s            # optional
/// max_connections: 10000        # optional; absent = no limit
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamProxyConfig {
    /// The UDP address to serve on.
    pub address: SocketAddr,
    /// ALPN protocols a client must offer one of.
    pub alpn: Vec<String>,
    /// The cluster streams go to; it must exist in the config.
    pub cluster: String,
    /// Reset a stream when no byte moved either way for this long.
    #[serde(default = "default_idle", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Bidirectional streams a connection may have open at once.
    #[serde(default = "default_streams")]
    pub max_concurrent_streams: NonZeroU32,
    /// Copy buffer per direction of a stream.
    #[serde(default = "default_buffer")]
    pub buffer_bytes: ByteSize,
    /// How long a drain lets streams in flight go on.
    #[serde(default = "default_drain", with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// At most this many connections at once; absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<NonZeroU32>,
}

fn default_idle() -> Duration {
    DEFAULT_IDLE_TIMEOUT
}
fn default_streams() -> NonZeroU32 {
    NonZeroU32::new(DEFAULT_MAX_CONCURRENT_STREAMS).unwrap_or(NonZeroU32::MIN)
}
fn default_buffer() -> ByteSize {
    ByteSize(DEFAULT_BUFFER_BYTES as u64)
}
fn default_drain() -> Duration {
    DEFAULT_DRAIN_TIMEOUT
}

impl StreamProxyConfig {
    /// Validates the section into a builder serving `tls` and proxying to
    /// `cluster` (resolved by the caller from [`cluster`](Self::cluster)).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field: no ALPN protocol or an empty or over-long
    /// one, a zero idle timeout, a buffer out of range, a cluster of another name.
    pub fn builder(
        &self,
        name: impl Into<Arc<str>>,
        tls: rustls::ServerConfig,
        cluster: Arc<Cluster>,
    ) -> Result<StreamProxyBuilder, ConfigError> {
        if self.alpn.is_empty() {
            return Err(ConfigError::new("alpn", "at least one protocol is needed"));
        }
        for (i, p) in self.alpn.iter().enumerate() {
            if p.is_empty() || p.len() > 255 {
                return Err(ConfigError::new(
                    format!("alpn[{i}]"),
                    format!("{p:?} is not 1 to 255 bytes long"),
                ));
            }
        }
        if self.idle_timeout.is_zero() {
            return Err(ConfigError::new("idle_timeout", "must be above zero"));
        }
        if !(512..=1 << 20).contains(&self.buffer_bytes.get()) {
            return Err(ConfigError::new(
                "buffer_bytes",
                format!("{} is not from 512 to 1048576", self.buffer_bytes),
            ));
        }
        if *cluster.name != *self.cluster {
            return Err(ConfigError::new(
                "cluster",
                format!("given cluster {} for {}", cluster.name, self.cluster),
            ));
        }
        Ok(StreamProxyBuilder::new(name, tls, cluster)
            .alpn(self.alpn.iter().map(|p| p.as_bytes().to_vec()))
            .idle_timeout(self.idle_timeout)
            .max_concurrent_streams(self.max_concurrent_streams)
            .buffer_bytes(self.buffer_bytes.as_usize())
            .drain_timeout(self.drain_timeout)
            .max_connections(self.max_connections))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(json: &str) -> Result<StreamProxyConfig, serde_json::Error> {
        serde_json::from_str(json)
    }

    fn tls() -> rustls::ServerConfig {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        crate::h3::server_config(
            c.cert.pem().as_bytes(),
            c.key_pair.serialize_pem().as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn defaults_round_trip_and_errors_name_the_field() {
        let cfg = parse(r#"{"address": "127.0.0.1:0", "alpn": ["echo"], "cluster": "b"}"#).unwrap();
        assert_eq!(cfg.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        assert_eq!(cfg.max_concurrent_streams.get(), 100);
        assert_eq!(cfg.buffer_bytes.as_usize(), 16 * 1024);
        let back: StreamProxyConfig =
            serde_json::from_value(serde_json::to_value(&cfg).unwrap()).unwrap();
        assert_eq!(back, cfg);
        assert!(
            parse(r#"{"address": "127.0.0.1:0", "alpn": [], "cluster": "b", "x": 1}"#).is_err()
        );
        assert!(parse(
            r#"{"address": "127.0.0.1:0", "alpn": ["a"], "cluster": "b",
                          "max_concurrent_streams": 0}"#
        )
        .is_err());

        let cluster = Cluster::builder("b")
            .endpoint("127.0.0.1:9".parse().unwrap())
            .build()
            .unwrap();
        let err = |mut cfg: StreamProxyConfig, f: fn(&mut StreamProxyConfig)| {
            f(&mut cfg);
            cfg.builder("s", tls(), cluster.clone())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(cfg.clone(), |c| c.alpn.clear()),
            "alpn: at least one protocol is needed"
        );
        assert_eq!(
            err(cfg.clone(), |c| c.alpn.push(String::new())),
            "alpn[1]: \"\" is not 1 to 255 bytes long"
        );
        assert_eq!(
            err(cfg.clone(), |c| c.idle_timeout = Duration::ZERO),
            "idle_timeout: must be above zero"
        );
        assert!(err(cfg.clone(), |c| c.buffer_bytes = ByteSize(10)).starts_with("buffer_bytes: "));
        assert_eq!(
            err(cfg.clone(), |c| c.cluster = "other".into()),
            "cluster: given cluster b for other"
        );
        assert!(cfg.builder("s", tls(), cluster).is_ok());
    }
}
