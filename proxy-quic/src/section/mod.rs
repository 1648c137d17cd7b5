//! The top-level `quic` section of the proxy config: HTTP/3 listeners that serve the
//! routes and filters of a TCP listener, parsed by this crate (proxy-core carries it
//! as `Config::quic`).
//!
//! ```yaml
//! quic:
//!   h3:
//!     - serves: web                  # the TCP listener whose routes and filters apply
//!       name: web-h3                 # optional, default "<serves>-h3"
//!       address: 0.0.0.0:8443        # UDP
//!       certificate: {cert: certs/server.pem, key: certs/server.key}
//!       max_concurrent_streams: 100  # optional, per connection
//!       idle_timeout: 60s            # optional
//!       max_request_head_bytes: 64KiB  # optional
//!       drain_timeout: 10s           # optional
//!       quic_lb: {config_id: 0, server_id: "31441a", nonce_length: 5}  # optional
//!       alt_svc: {max_age: 24h}      # optional: `web` advertises this listener
//! ```
//!
//! [`QuicSection::from_section`] parses and checks the section alone;
//! [`QuicSection::prepare`] checks it against the rest of the config (the listener
//! served exists) and loads the certificates, starting nothing; [`Prepared::start`]
//! binds and serves on a running `proxy_core::Server`. [`advertise`] and [`prepare`]
//! do the first two for a whole config; with the `upgrade` feature, `QuicRun` runs
//! the listeners beside a server started by `proxy_upgrade::serve`, hands them
//! over in its hot upgrades, and starts them again on the same UDP sockets for the
//! server a roll-back takes back.
//!
//! # Example
//! ```
//! use proxy_core::config::Section;
//! use proxy_quic::section::QuicSection;
//!
//! let section = Section::from_value(serde_json::json!({"h3": [{
//!     "serves": "web", "address": "127.0.0.1:8443",
//!     "certificate": {"cert": "server.pem", "key": "server.key"},
//!     "max_concurrent_streams": 0}]}));
//! let err = QuicSection::from_section(&section).unwrap_err();
//! assert_eq!(err.path, "quic.h3[0].max_concurrent_streams");
//! ```

mod handover;
#[cfg(feature = "upgrade")]
mod run;
mod start;
#[cfg(feature = "upgrade")]
mod take_back;
#[cfg(feature = "upgrade")]
mod upgrade;

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use proxy_core::{
    config::{ByteSize, Config, HeaderValueConfig, ListenAddress, Section},
    ConfigError,
};
use proxy_tls::config::KeyPair;
use serde::{Deserialize, Serialize};

pub use handover::InheritedUdp;
#[cfg(feature = "upgrade")]
pub use run::{QuicRun, QuicRunError};
pub use start::{Prepared, QuicStartError, Running};

use crate::{
    h3::{
        AltSvcLayer, DEFAULT_DRAIN_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONCURRENT_STREAMS,
        DEFAULT_MAX_REQUEST_HEAD_BYTES,
    },
    QuicLbConfig, QuicLbServer,
};

/// The `quic` section: the HTTP/3 listeners.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuicSection {
    /// HTTP/3 listeners, each serving a TCP listener's routes and filters.
    #[serde(default)]
    pub h3: Vec<H3Config>,
}

/// One HTTP/3 listener of the `quic` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct H3Config {
    /// The TCP listener (by name) whose HTTP filters and routes every request runs,
    /// as of the config current when it starts (reloads apply request by request).
    pub serves: String,
    /// The listener's name (spans, metrics); default `<serves>-h3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The UDP address to serve on.
    pub address: SocketAddr,
    /// The certificate chain and key, PEM files resolved from the config file's
    /// directory (proxy-tls's `{cert, key}`; `{secret}` is not supported here).
    pub certificate: KeyPair,
    /// Request streams a client may have open at once on a connection.
    #[serde(default = "default_streams")]
    pub max_concurrent_streams: u32,
    /// Close a connection with no packet for this long.
    #[serde(default = "default_idle", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// The largest request head (decoded header fields); larger ones get 431.
    #[serde(default = "default_head")]
    pub max_request_head_bytes: ByteSize,
    /// How long a drain lets requests in flight finish.
    #[serde(default = "default_drain", with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// QUIC-LB connection IDs, for a QUIC-LB load balancer in front; absent: quinn's
    /// random IDs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quic_lb: Option<QuicLbConfig>,
    /// The TCP listener `serves` advertises this listener in an `alt-svc` response
    /// header on every route; absent: not advertised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alt_svc: Option<AltSvcConfig>,
}

/// How the TCP listener advertises HTTP/3 (RFC 7838 `alt-svc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AltSvcConfig {
    /// How long clients may remember the advertisement (`ma`), whole seconds.
    #[serde(default = "default_max_age", with = "humantime_serde")]
    pub max_age: Duration,
}

fn default_streams() -> u32 {
    DEFAULT_MAX_CONCURRENT_STREAMS
}
fn default_idle() -> Duration {
    DEFAULT_IDLE_TIMEOUT
}
fn default_head() -> ByteSize {
    ByteSize(DEFAULT_MAX_REQUEST_HEAD_BYTES)
}
fn default_drain() -> Duration {
    DEFAULT_DRAIN_TIMEOUT
}
fn default_max_age() -> Duration {
    Duration::from_secs(86_400)
}

impl H3Config {
    /// The listener's name: `name`, or `<serves>-h3`.
    pub fn listener_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("{}-h3", self.serves))
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.serves.is_empty() {
            return Err(ConfigError::new("serves", "must name a TCP listener"));
        }
        if self.max_concurrent_streams == 0 {
            return Err(ConfigError::new(
                "max_concurrent_streams",
                "must be above zero (0 lets no request in)",
            ));
        }
        if self.max_request_head_bytes.get() == 0 {
            return Err(ConfigError::new(
                "max_request_head_bytes",
                "must be above zero",
            ));
        }
        if let KeyPair::Secret(name) = &self.certificate {
            return Err(ConfigError::new(
                "certificate",
                format!("secret {name:?}: only {{cert, key}} files are supported here"),
            ));
        }
        if let Some(lb) = &self.quic_lb {
            QuicLbServer::try_from(lb).map_err(|e| e.within("quic_lb"))?;
        }
        if self.alt_svc.is_some() && self.address.port() == 0 {
            return Err(ConfigError::new(
                "alt_svc",
                "needs a fixed UDP port in `address` to advertise",
            ));
        }
        Ok(())
    }
}

impl QuicSection {
    /// Parses and checks the section alone: errors read `quic.h3[0].FIELD: reason`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field: an unknown field, a bad value, zero
    /// streams, a certificate given as a secret, a bad `quic_lb`, `alt_svc` with port
    /// 0, two listeners with one name.
    pub fn from_section(section: &Section) -> Result<Self, ConfigError> {
        let parsed: Self = section.parse().map_err(|e| e.within("quic"))?;
        let mut names = std::collections::HashSet::new();
        for (i, h3) in parsed.h3.iter().enumerate() {
            let path = format!("quic.h3[{i}]");
            h3.check().map_err(|e| e.within(&path))?;
            if !names.insert(h3.listener_name()) {
                return Err(ConfigError::new(
                    format!("{path}.name"),
                    format!("a second listener named {:?}", h3.listener_name()),
                ));
            }
        }
        Ok(parsed)
    }

    /// The section of `config`, parsed and checked ([`from_section`](Self::from_section));
    /// `None` when it has none.
    ///
    /// # Errors
    /// As [`from_section`](Self::from_section).
    pub fn from_config(config: &Config) -> Result<Option<Self>, ConfigError> {
        config.quic.as_ref().map(Self::from_section).transpose()
    }

    /// Checks the section against `config` (each `serves` names one of its TCP
    /// listeners) and loads the certificates (paths resolved from
    /// `config.base_dir`): everything a start needs, and nothing bound or started.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field (`quic.h3[0].serves`,
    /// `quic.h3[0].certificate`).
    pub fn prepare(&self, config: &Config) -> Result<Prepared, ConfigError> {
        let mut listeners = Vec::with_capacity(self.h3.len());
        for (i, h3) in self.h3.iter().enumerate() {
            let path = format!("quic.h3[{i}]");
            let tcp = config.listeners.iter().find(|l| l.name == h3.serves);
            if !matches!(tcp.map(|l| &l.address), Some(ListenAddress::Tcp(_))) {
                return Err(ConfigError::new(
                    format!("{path}.serves"),
                    format!("no TCP listener named {:?}", h3.serves),
                ));
            }
            let tls = load_certificate(&h3.certificate, |p| config.resolve_path(p))
                .map_err(|e| e.within(&path))?;
            let generator = match &h3.quic_lb {
                Some(lb) => Some(
                    QuicLbServer::try_from(lb).map_err(|e| e.within(&format!("{path}.quic_lb")))?,
                ),
                None => None,
            };
            listeners.push(start::PreparedH3 {
                config: h3.clone(),
                tls,
                quic_lb: generator,
            });
        }
        Ok(Prepared {
            listeners,
            inherited: Vec::new(),
        })
    }

    /// Adds the `alt-svc` header of each listener with `alt_svc` to every route of
    /// the TCP listener it serves (`response_headers_to_add`), so that the TCP
    /// listener advertises it. Apply it to each config loaded (start and reload).
    pub fn advertise(&self, config: &mut Config) {
        for h3 in &self.h3 {
            let Some(alt) = &h3.alt_svc else { continue };
            let layer = AltSvcLayer::new(h3.address.port(), alt.max_age);
            let Ok(value) = layer.value().to_str() else {
                continue;
            };
            let header = HeaderValueConfig {
                name: "alt-svc".into(),
                value: value.to_owned(),
                append: false,
            };
            let listeners = config.listeners.iter_mut().filter(|l| l.name == h3.serves);
            for vhost in listeners.flat_map(|l| l.virtual_hosts.iter_mut()) {
                for route in &mut vhost.routes {
                    if !route.response_headers_to_add.contains(&header) {
                        route.response_headers_to_add.push(header.clone());
                    }
                }
            }
        }
    }
}

/// `config` with the `alt-svc` header of its `quic` section's listeners added to
/// the routes they advertise on ([`QuicSection::advertise`]); unchanged without a
/// section. What a binary applies to every config it loads (start and reload).
///
/// # Errors
/// The section's [`ConfigError`] ([`QuicSection::from_section`]).
///
/// # Example
/// ```
/// use proxy_core::config::Config;
///
/// let config = Config::from_yaml("listeners: []\nclusters: []\n").unwrap();
/// let config = proxy_quic::section::advertise(config).unwrap();
/// assert!(proxy_quic::section::prepare(&config).unwrap().is_none());
/// ```
pub fn advertise(mut config: Config) -> Result<Config, ConfigError> {
    if let Some(section) = QuicSection::from_config(&config)? {
        section.advertise(&mut config);
    }
    Ok(config)
}

/// The `quic` section of `config` checked against it, its certificates loaded
/// ([`QuicSection::prepare`]); `None` without a section. Starts nothing: what a
/// binary's `--validate` runs.
///
/// # Errors
/// The section's [`ConfigError`], naming the field.
pub fn prepare(config: &Config) -> Result<Option<Prepared>, ConfigError> {
    QuicSection::from_config(config)?
        .map(|section| section.prepare(config))
        .transpose()
}

/// The rustls config of a `{cert, key}` pair.
fn load_certificate(
    pair: &KeyPair,
    resolve: impl Fn(&Path) -> std::path::PathBuf,
) -> Result<Arc<rustls::ServerConfig>, ConfigError> {
    let KeyPair::Files { cert, key } = pair else {
        return Err(ConfigError::new("certificate", "only {cert, key} files"));
    };
    let read = |field: &str, p: &Path| {
        let path = resolve(p);
        std::fs::read(&path).map_err(|e| {
            ConfigError::new(
                format!("certificate.{field}"),
                format!("reading {}: {e}", path.display()),
            )
        })
    };
    let (cert_pem, key_pem) = (read("cert", cert)?, read("key", key)?);
    crate::h3::server_config(&cert_pem, &key_pem)
        .map(Arc::new)
        .map_err(|e| ConfigError::new("certificate", proxy_core::DisplayChain(&e).to_string()))
}

#[cfg(test)]
mod tests;
