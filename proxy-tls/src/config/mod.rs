//! The serde config of the `tls` network filter (termination) and the `tls` upstream
//! transport (origination). Validated once into runtime objects; the error names the
//! field path.

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use crate::error::ConfigBuildError;

/// `network_filters: [{typed: tls, config: ...}]`: TLS termination on a listener.
///
/// ```yaml
/// certificates:
///   - { cert: /etc/proxy/a.pem, key: /etc/proxy/a.key }          # names from its SANs
///   - { cert: /etc/proxy/b.pem, key: /etc/proxy/b.key, server_names: ["*.b.test"] }
///   - { secret: default-cert, default: true }                      # from the secret source
/// client_auth: { roots: /etc/proxy/clients-ca.pem, mode: required }
/// alpn: [h2, http/1.1]
/// versions: [tls12, tls13]
/// handshake_timeout: 10s
/// session: { tickets: true, ticket_key_rotation: 1h, cache_size: 4096 }
/// early_data: { enabled: false, max_size: 16384 }
/// rotation: { poll_interval: 5s, drain: 30s }
/// offload: { engines: [{ name: card0, threads: 2 }, { name: card1, threads: 2 }] }
/// guomi: { cert: /etc/proxy/sm2.pem, key: /etc/proxy/sm2.key, client_roots: /etc/proxy/sm2-ca.pem }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminationConfig {
    /// Server certificates; SNI picks among them (exact names first, then wildcards),
    /// the one marked `default` (or else the first) serves clients without a match.
    pub certificates: Vec<CertificateConfig>,
    /// Client certificate verification (mutual TLS); none: no client certificate asked.
    #[serde(default)]
    pub client_auth: Option<ClientAuthConfig>,
    /// ALPN protocols offered, in preference order.
    #[serde(default = "default_alpn")]
    pub alpn: Vec<String>,
    /// Protocol versions; empty: TLS 1.2 and 1.3.
    #[serde(default)]
    pub versions: Vec<TlsVersion>,
    /// The whole handshake (ClientHello to Finished) must complete within this.
    #[serde(default = "default_handshake_timeout", with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Session resumption.
    #[serde(default)]
    pub session: SessionConfig,
    /// TLS 1.3 early data (0-RTT); off by default.
    #[serde(default)]
    pub early_data: EarlyDataConfig,
    /// Live reloading of certificate material.
    #[serde(default)]
    pub rotation: RotationConfig,
    /// Private-key operations on offload engines instead of the I/O threads.
    #[serde(default)]
    pub offload: Option<OffloadConfig>,
    /// A Guomi (RFC 8998, SM2/SM3/SM4) certificate, offered to clients that offer
    /// TLS_SM4_GCM_SM3 or TLS_SM4_CCM_SM3; the others get the international suites.
    #[serde(default)]
    pub guomi: Option<GuomiConfig>,
}

/// One server certificate: a PEM chain and key from files, or a named secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// PEM certificate chain file (leaf first).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// PEM private key file (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// The name of a secret in the secret source (instead of `cert`/`key`).
    #[serde(default)]
    pub secret: Option<String>,
    /// SNI names this certificate serves (`*.example.com` for a wildcard); empty: the
    /// DNS names of the leaf's subjectAltName.
    #[serde(default)]
    pub server_names: Vec<String>,
    /// Serve this certificate when no name matches (default: the first certificate).
    #[serde(default)]
    pub default: bool,
}

/// Client certificate verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuthConfig {
    /// PEM file of the CA certificates client certificates must chain to.
    #[serde(default)]
    pub roots: Option<PathBuf>,
    /// The name of a secret in the secret source holding the roots (instead of `roots`).
    #[serde(default)]
    pub roots_secret: Option<String>,
    /// `required` (default): no certificate, no connection; `optional`: a certificate
    /// is verified when presented.
    #[serde(default)]
    pub mode: ClientAuthMode,
}

/// Whether a client certificate is required.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMode {
    /// A client without a valid certificate is refused (alert `certificate_required`).
    #[default]
    Required,
    /// Clients may connect without a certificate; one presented must be valid.
    Optional,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

/// Session resumption settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// Stateless session tickets (keys rotated every `ticket_key_rotation`, accepted
    /// for twice that). Forced off when early data is on: 0-RTT uses single-use,
    /// server-side session state instead.
    #[serde(default = "yes")]
    pub tickets: bool,
    /// How long one ticket key encrypts new tickets.
    #[serde(default = "default_ticket_rotation", with = "humantime_serde")]
    pub ticket_key_rotation: Duration,
    /// Entries of the stateful session cache (TLS 1.2 session ids, TLS 1.3 stateful
    /// tickets); 0 disables it.
    #[serde(default = "default_cache_size")]
    pub cache_size: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            tickets: true,
            ticket_key_rotation: default_ticket_rotation(),
            cache_size: default_cache_size(),
        }
    }
}

/// TLS 1.3 early data (0-RTT).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyDataConfig {
    /// Accept early data on resumed TLS 1.3 sessions.
    #[serde(default)]
    pub enabled: bool,
    /// The most early data accepted per connection, in bytes.
    #[serde(default = "default_early_data_size")]
    pub max_size: u32,
}

impl Default for EarlyDataConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_size: default_early_data_size(),
        }
    }
}

/// Live reloading of certificates, keys and roots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationConfig {
    /// How often the files are checked for a changed modification time; `0s`: never.
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How long connections made with replaced material keep serving before they are
    /// retired at their next request boundary.
    #[serde(default = "default_drain", with = "humantime_serde")]
    pub drain: Duration,
}

impl Default for RotationConfig {
    fn default() -> Self {
        Self {
            poll_interval: default_poll_interval(),
            drain: default_drain(),
        }
    }
}

/// Private-key offload engines ("cards") behind one dispatcher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffloadConfig {
    /// The engines; engines of the same name are shared by every listener and survive
    /// config reloads.
    pub engines: Vec<EngineConfig>,
}

/// One software offload engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// The engine's name (a metric label).
    pub name: String,
    /// Threads of its dedicated pool.
    #[serde(default = "default_engine_threads")]
    pub threads: std::num::NonZeroUsize,
}

/// The Guomi certificate of a listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuomiConfig {
    /// PEM SM2 certificate chain file.
    pub cert: PathBuf,
    /// PEM SM2 private key file.
    pub key: PathBuf,
    /// PEM SM2 CA certificates that Guomi client certificates must chain to. Required
    /// when the listener has `client_auth` (same `mode`): a Guomi client is held to
    /// mutual TLS like any other.
    #[serde(default)]
    pub client_roots: Option<PathBuf>,
}

/// `clusters[].transport: {typed: tls, config: ...}`: TLS to the upstream endpoints.
///
/// ```yaml
/// server_name: api.internal       # SNI and the name verified; default: the endpoint IP
/// roots: { files: [/etc/proxy/upstream-ca.pem] }   # or { system: true } / { webpki: true }
/// alpn: [h2]
/// client_cert: { cert: /etc/proxy/client.pem, key: /etc/proxy/client.key }
/// verify: true
/// handshake_timeout: 10s
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginationConfig {
    /// The SNI name sent and the name the server certificate must hold; default: the
    /// endpoint's IP address.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Send SNI (on by default; never sent for an IP address).
    #[serde(default = "yes")]
    pub sni: bool,
    /// Trusted roots; none given: the system's roots.
    #[serde(default)]
    pub roots: RootsConfig,
    /// ALPN protocols offered, in preference order; empty: no ALPN.
    #[serde(default)]
    pub alpn: Vec<String>,
    /// A client certificate presented to the upstream.
    #[serde(default)]
    pub client_cert: Option<CertificateConfig>,
    /// Verify the server certificate (on by default; off only for testing).
    #[serde(default = "yes")]
    pub verify: bool,
    /// Protocol versions; empty: TLS 1.2 and 1.3.
    #[serde(default)]
    pub versions: Vec<TlsVersion>,
    /// The handshake must complete within this.
    #[serde(default = "default_handshake_timeout", with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Live reloading of the roots and client certificate.
    #[serde(default)]
    pub rotation: RotationConfig,
}

/// Where trusted roots come from; several may be combined.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootsConfig {
    /// PEM files of CA certificates.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// A secret in the secret source holding PEM CA certificates.
    #[serde(default)]
    pub secret: Option<String>,
    /// The operating system's trust store.
    #[serde(default)]
    pub system: bool,
    /// The Mozilla root program, compiled in (webpki-roots).
    #[serde(default)]
    pub webpki: bool,
}

impl RootsConfig {
    /// Whether no source is named (then the system roots are used).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.secret.is_none() && !self.system && !self.webpki
    }
}

fn yes() -> bool {
    true
}
fn default_alpn() -> Vec<String> {
    vec!["h2".into(), "http/1.1".into()]
}
fn default_handshake_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_ticket_rotation() -> Duration {
    Duration::from_secs(3600)
}
fn default_cache_size() -> usize {
    4096
}
fn default_early_data_size() -> u32 {
    16 * 1024
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_drain() -> Duration {
    Duration::from_secs(30)
}
fn default_engine_threads() -> std::num::NonZeroUsize {
    std::num::NonZeroUsize::MIN.saturating_add(1)
}

/// Parses a YAML section into `T`; the error names the field path inside the section
/// (`certificates[0].cert: invalid type ...`).
///
/// # Errors
/// The message names the offending field and the reason.
/// The largest session cache accepted (entries). rustls allocates the whole cache
/// up front, so a huge value would exhaust memory at load.
pub const MAX_SESSION_CACHE: usize = 1_000_000;
/// The largest early data (0-RTT) a connection may send, buffered whole before the
/// handshake completes.
pub const MAX_EARLY_DATA: u32 = 1024 * 1024;
/// The most threads one offload engine may start.
pub const MAX_ENGINE_THREADS: usize = 256;

/// ALPN protocol names: 1 to 255 bytes each (RFC 7301).
fn check_alpn(alpn: &[String]) -> Result<(), ConfigBuildError> {
    for (i, p) in alpn.iter().enumerate() {
        if p.is_empty() || p.len() > 255 {
            return Err(ConfigBuildError::Invalid(format!(
                "alpn[{i}]: {p:?} must be 1 to 255 bytes long"
            )));
        }
    }
    Ok(())
}

fn check_handshake_timeout(d: Duration) -> Result<(), ConfigBuildError> {
    if d.is_zero() {
        return Err(ConfigBuildError::Invalid(
            "handshake_timeout: must be above zero".into(),
        ));
    }
    Ok(())
}

impl TerminationConfig {
    /// Checks the values serde cannot: ALPN names, a zero handshake timeout, the
    /// session cache size, the early data size, offload engine thread counts.
    ///
    /// # Errors
    /// [`ConfigBuildError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigBuildError> {
        check_alpn(&self.alpn)?;
        check_handshake_timeout(self.handshake_timeout)?;
        if self.session.cache_size > MAX_SESSION_CACHE {
            return Err(ConfigBuildError::Invalid(format!(
                "session.cache_size: {} is above {MAX_SESSION_CACHE}",
                self.session.cache_size
            )));
        }
        if self.early_data.max_size > MAX_EARLY_DATA {
            return Err(ConfigBuildError::Invalid(format!(
                "early_data.max_size: {} is above {MAX_EARLY_DATA} (early data is buffered whole)",
                self.early_data.max_size
            )));
        }
        if let Some(o) = &self.offload {
            for (i, e) in o.engines.iter().enumerate() {
                if e.threads.get() > MAX_ENGINE_THREADS {
                    return Err(ConfigBuildError::Invalid(format!(
                        "offload.engines[{i}].threads: {} is above {MAX_ENGINE_THREADS}",
                        e.threads
                    )));
                }
            }
        }
        Ok(())
    }
}

impl OriginationConfig {
    /// Checks the values serde cannot: ALPN names and a zero handshake timeout.
    ///
    /// # Errors
    /// [`ConfigBuildError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigBuildError> {
        check_alpn(&self.alpn)?;
        check_handshake_timeout(self.handshake_timeout)
    }
}

pub(crate) fn parse<T: serde::de::DeserializeOwned>(cfg: &serde_yaml::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(cfg.clone()).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.into_inner().to_string()
        } else {
            format!("{path}: {}", e.into_inner())
        }
    })
}
