//! The typed config of the `tls` network filter (termination, [`TerminationConfig`])
//! and the `tls` upstream transport (origination, [`OriginationConfig`]).
//!
//! Plain serde data that code builds directly or the registry parses from a config
//! section. [`TerminationConfig::validate`] and [`OriginationConfig::validate`] check
//! what serde cannot, once, when the layer or transport is built; every error names
//! its field (`certificates[1].cert`, `client_auth.roots.files[0]`). Relative file
//! paths resolve from the config file's directory: the registry's factories call
//! [`TerminationConfig::resolve_paths`] with the build context's resolver.

mod origination;
mod priority;
mod sources;
mod validate;

use std::{
    num::NonZeroU32,
    path::{Path, PathBuf},
    time::Duration,
};

use proxy_core::config::ByteSize;
use serde::{Deserialize, Serialize};

pub use origination::{GuomiOriginationConfig, GuomiSuites, OriginationConfig};
pub use priority::ThreadPriority;
pub use sources::{CertificateConfig, KeyPair, Roots};
pub use validate::{MAX_EARLY_DATA_BYTES, MAX_ENGINE_THREADS, MAX_SESSION_CACHE_ENTRIES};

/// `network_filters: [{typed: tls, config: ...}]`: TLS termination on a listener.
///
/// ```yaml
/// certificates:
///   - { cert: certs/a.pem, key: certs/a.key }                     # names from its SANs
///   - { cert: certs/b.pem, key: certs/b.key, server_names: ["*.b.test"] }
///   - { secret: default-cert, default: true }                     # from the secret source
/// client_auth: { roots: { files: [certs/clients-ca.pem] }, mode: required }
/// alpn: [h2, http/1.1]
/// versions: [tls12, tls13]
/// handshake_timeout: 10s
/// max_handshakes_in_progress: 16                                  # per worker; absent: no cap
/// session: { tickets: true, ticket_key_rotation: 1h, cache: true, cache_entries: 4096 }
/// early_data: { max_bytes: 16KiB }                                 # absent: no 0-RTT
/// rotation: { watch_files: true, poll_interval: 5s, drain: 30s }
/// offload: { engines: [{ name: card0, threads: 2, thread_priority: idle }, { name: card1 }] }
/// guomi: { cert: certs/sm2.pem, key: certs/sm2.key, client_roots: { files: [certs/sm2-ca.pem] } }
/// ```
///
/// # Example
/// ```
/// use proxy_tls::config::{CertificateConfig, ClientAuthConfig, Roots, TerminationConfig};
///
/// let mut cfg = TerminationConfig::new(vec![
///     CertificateConfig::files("certs/a.pem", "certs/a.key"),
///     CertificateConfig::secret("fallback").as_default(),
/// ]);
/// cfg.client_auth = Some(ClientAuthConfig::required(Roots::files(["certs/ca.pem"])));
/// cfg.validate().unwrap();
///
/// let from_yaml: TerminationConfig = proxy_core::config::from_yaml(
///     "certificates: [{cert: certs/a.pem, key: certs/a.key}, {secret: fallback, default: true}]\n\
///      client_auth: {roots: {files: [certs/ca.pem]}}",
/// ).unwrap();
/// assert_eq!(from_yaml, cfg);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminationConfig {
    /// Server certificates; SNI picks among them (exact names first, then wildcards),
    /// the one marked `default` (or else the first) serves clients without a match.
    pub certificates: Vec<CertificateConfig>,
    /// Client certificate verification (mutual TLS); absent: no client certificate
    /// is asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuthConfig>,
    /// ALPN protocols offered, in preference order; empty: no ALPN.
    #[serde(default = "default_alpn")]
    pub alpn: Vec<String>,
    /// Protocol versions accepted (at least one).
    #[serde(default = "default_versions")]
    pub versions: Vec<TlsVersion>,
    /// The whole handshake (ClientHello to Finished) must complete within this.
    #[serde(default = "default_handshake_timeout", with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// The most handshakes each worker (I/O thread) computes at once: from the
    /// ClientHello to the server's flight (key exchange, signature, encryption of the
    /// flight, on the I/O thread or awaiting an offload engine). A connection whose
    /// ClientHello arrives while every slot is taken waits, unanswered, until one
    /// frees, within `handshake_timeout`; so a burst of new handshakes past what the
    /// cores can sign queues at the listener instead of interleaving ever more
    /// handshake work with the requests of open connections. Waiting for the client
    /// (its ClientHello, its Finished) holds no slot. Absent: no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_handshakes_in_progress: Option<NonZeroU32>,
    /// Session resumption.
    #[serde(default)]
    pub session: SessionConfig,
    /// TLS 1.3 early data (0-RTT); absent: refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_data: Option<EarlyDataConfig>,
    /// Live reloading of certificate material.
    #[serde(default)]
    pub rotation: RotationConfig,
    /// Private-key operations on offload engines instead of the I/O threads; absent:
    /// inline. Needs the `offload` cargo feature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offload: Option<OffloadConfig>,
    /// A Guomi (RFC 8998, SM2/SM3/SM4) certificate, offered to clients that offer
    /// TLS_SM4_GCM_SM3 or TLS_SM4_CCM_SM3; the others get the international suites.
    /// Needs the `guomi` cargo feature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guomi: Option<GuomiConfig>,
}

impl TerminationConfig {
    /// A config serving `certificates`, every other setting at its default.
    pub fn new(certificates: Vec<CertificateConfig>) -> Self {
        Self {
            certificates,
            client_auth: None,
            alpn: default_alpn(),
            versions: default_versions(),
            handshake_timeout: default_handshake_timeout(),
            max_handshakes_in_progress: None,
            session: SessionConfig::default(),
            early_data: None,
            rotation: RotationConfig::default(),
            offload: None,
            guomi: None,
        }
    }

    /// Maps every file path of the config: certificates, keys, roots, the Guomi
    /// material. The registry's factory resolves relative paths from the config
    /// file's directory so (`|p| ctx.resolve_path(p)`).
    pub fn resolve_paths(&mut self, resolve: impl Fn(&Path) -> PathBuf) {
        for c in &mut self.certificates {
            c.key_pair.resolve_paths(&resolve);
        }
        if let Some(ca) = &mut self.client_auth {
            ca.roots.resolve_paths(&resolve);
        }
        if let Some(g) = &mut self.guomi {
            g.cert = resolve(&g.cert);
            g.key = resolve(&g.key);
            if let Some(r) = &mut g.client_roots {
                r.resolve_paths(&resolve);
            }
        }
    }
}

/// Client certificate verification.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuthConfig {
    /// The CA certificates client certificates must chain to.
    pub roots: Roots,
    /// `required` (default): no certificate, no connection; `optional`: a certificate
    /// is verified when presented.
    #[serde(default)]
    pub mode: ClientAuthMode,
}

impl ClientAuthConfig {
    /// Client certificates required, chaining to `roots`.
    pub fn required(roots: Roots) -> Self {
        Self {
            roots,
            mode: ClientAuthMode::Required,
        }
    }

    /// Client certificates verified when presented, chaining to `roots`.
    pub fn optional(roots: Roots) -> Self {
        Self {
            roots,
            mode: ClientAuthMode::Optional,
        }
    }
}

/// Whether a client certificate is required.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMode {
    /// A client without a valid certificate is refused (alert `certificate_required`).
    #[default]
    Required,
    /// Clients may connect without a certificate; one presented must be valid.
    Optional,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

/// Session resumption settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// Stateless session tickets (keys rotated every `ticket_key_rotation`, accepted
    /// for twice that). Not used when early data is on: 0-RTT uses single-use,
    /// server-side session state instead.
    #[serde(default = "yes")]
    pub tickets: bool,
    /// How long one ticket key encrypts new tickets (above zero).
    #[serde(default = "default_ticket_rotation", with = "humantime_serde")]
    pub ticket_key_rotation: Duration,
    /// The stateful session cache (TLS 1.2 session ids, TLS 1.3 stateful tickets).
    /// Always on when early data is on.
    #[serde(default = "yes")]
    pub cache: bool,
    /// Entries of the stateful session cache, at most
    /// [`MAX_SESSION_CACHE_ENTRIES`] (rustls allocates it whole).
    #[serde(default = "default_cache_entries")]
    pub cache_entries: NonZeroU32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            tickets: true,
            ticket_key_rotation: default_ticket_rotation(),
            cache: true,
            cache_entries: default_cache_entries(),
        }
    }
}

/// TLS 1.3 early data (0-RTT), accepted when this section is present.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyDataConfig {
    /// The most early data accepted per connection (buffered whole before the
    /// handshake completes): above zero, at most [`MAX_EARLY_DATA_BYTES`].
    #[serde(default = "default_early_data_bytes")]
    pub max_bytes: ByteSize,
}

impl Default for EarlyDataConfig {
    fn default() -> Self {
        Self {
            max_bytes: default_early_data_bytes(),
        }
    }
}

/// Live reloading of certificates, keys and roots.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationConfig {
    /// Re-read the files when their modification time or size changes.
    #[serde(default = "yes")]
    pub watch_files: bool,
    /// How often the files are checked (above zero).
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
            watch_files: true,
            poll_interval: default_poll_interval(),
            drain: default_drain(),
        }
    }
}

/// Private-key offload engines ("cards") behind one dispatcher.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffloadConfig {
    /// The engines (at least one); engines of the same name are shared by every
    /// listener and survive config reloads.
    pub engines: Vec<EngineConfig>,
}

/// One offload engine: a software engine (a dedicated thread pool) unless an engine
/// of this name was added to the [`TlsRuntime`](crate::TlsRuntime).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// The engine's name (a metric label).
    pub name: String,
    /// Threads of a software engine's pool, at most [`MAX_ENGINE_THREADS`].
    #[serde(default = "default_engine_threads")]
    pub threads: NonZeroU32,
    /// How a software engine's threads are scheduled: `normal`, `idle` or
    /// `{nice: 1-19}`; default `{nice: 19}` (see [`ThreadPriority`]). Unused by an
    /// engine added to the runtime; set when the engine of this name is first made
    /// (a reload that changes it keeps the running engine).
    #[serde(default)]
    pub thread_priority: ThreadPriority,
}

/// The Guomi certificate of a listener.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuomiConfig {
    /// PEM SM2 certificate chain file.
    pub cert: PathBuf,
    /// PEM SM2 private key file.
    pub key: PathBuf,
    /// SM2 CA certificates that Guomi client certificates must chain to (`files` or
    /// `secret`). Required when the listener has `client_auth` (same `mode`): a Guomi
    /// client is held to mutual TLS like any other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_roots: Option<Roots>,
}

fn yes() -> bool {
    true
}
fn default_alpn() -> Vec<String> {
    vec!["h2".into(), "http/1.1".into()]
}
fn default_versions() -> Vec<TlsVersion> {
    vec![TlsVersion::Tls12, TlsVersion::Tls13]
}
fn default_handshake_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_ticket_rotation() -> Duration {
    Duration::from_secs(3600)
}
fn default_cache_entries() -> NonZeroU32 {
    NonZeroU32::new(4096).unwrap_or(NonZeroU32::MIN)
}
fn default_early_data_bytes() -> ByteSize {
    ByteSize(16 * 1024)
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_drain() -> Duration {
    Duration::from_secs(30)
}
fn default_engine_threads() -> NonZeroU32 {
    NonZeroU32::MIN.saturating_add(1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use proxy_core::config::{from_yaml, to_yaml, TypedConfig};

    use super::*;

    fn full_termination() -> TerminationConfig {
        let mut c = TerminationConfig::new(vec![
            CertificateConfig::files("certs/a.pem", "certs/a.key").server_names(["*.a.test"]),
            CertificateConfig::secret("fallback").as_default(),
        ]);
        c.client_auth = Some(ClientAuthConfig::optional(Roots::secret("clients")));
        c.versions = vec![TlsVersion::Tls13];
        c.session.cache = false;
        c.early_data = Some(EarlyDataConfig::default());
        c.rotation.watch_files = false;
        c.max_handshakes_in_progress = NonZeroU32::new(8);
        c.offload = Some(OffloadConfig {
            engines: vec![EngineConfig {
                name: "card0".into(),
                threads: NonZeroU32::MIN,
                thread_priority: ThreadPriority::Idle,
            }],
        });
        c.guomi = Some(GuomiConfig {
            cert: "certs/sm2.pem".into(),
            key: "certs/sm2.key".into(),
            client_roots: Some(Roots::files(["certs/sm2-ca.pem"])),
        });
        c
    }

    #[test]
    fn configs_round_trip_through_yaml_and_sections() {
        let t = full_termination();
        assert_eq!(
            from_yaml::<TerminationConfig>(&to_yaml(&t).unwrap()).unwrap(),
            t
        );
        let section = TypedConfig::with("tls", &t).unwrap().config;
        assert_eq!(section.parse::<TerminationConfig>().unwrap(), t);
        let mut o = OriginationConfig::new(Roots::Webpki);
        o.server_name = Some("a.test".into());
        o.client_cert = Some(KeyPair::secret("workload"));
        o.alpn = vec!["h2".into()];
        o.guomi = Some(GuomiOriginationConfig {
            suites: GuomiSuites::Only,
            roots: Roots::files(["certs/sm2-ca.pem"]),
            client_cert: Some(KeyPair::files("certs/sm2.pem", "certs/sm2.key")),
        });
        assert_eq!(
            from_yaml::<OriginationConfig>(&to_yaml(&o).unwrap()).unwrap(),
            o
        );
        // Everything but the certificates has a default.
        let minimal: TerminationConfig = from_yaml("certificates: [{secret: s}]").unwrap();
        assert_eq!(
            minimal,
            TerminationConfig::new(vec![CertificateConfig::secret("s")])
        );
        assert_eq!(
            from_yaml::<OriginationConfig>("{}").unwrap(),
            OriginationConfig::default()
        );
    }

    #[test]
    fn resolve_paths_maps_every_file() {
        let mut t = full_termination();
        t.client_auth = Some(ClientAuthConfig::required(Roots::files(["ca.pem"])));
        t.resolve_paths(|p| Path::new("/etc/proxy").join(p));
        let yaml = to_yaml(&t).unwrap();
        for file in [
            "certs/a.pem",
            "certs/a.key",
            "ca.pem",
            "certs/sm2.pem",
            "certs/sm2.key",
            "certs/sm2-ca.pem",
        ] {
            assert!(
                yaml.contains(&format!("/etc/proxy/{file}")),
                "{file}: {yaml}"
            );
        }
    }
}
