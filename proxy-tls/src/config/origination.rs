//! The config of the `tls` upstream transport.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use super::{
    default_handshake_timeout, default_versions, yes, KeyPair, Roots, RotationConfig, TlsVersion,
};

/// `clusters[].transport: {typed: tls, config: ...}`: TLS to the upstream endpoints.
///
/// ```yaml
/// server_name: api.internal       # SNI and the name verified; default: the endpoint IP
/// roots: { files: [certs/upstream-ca.pem] }   # or { secret: ca }, system (default), webpki
/// alpn: [h2]                      # default: the cluster's protocol
/// client_cert: { cert: certs/client.pem, key: certs/client.key }   # or { secret: workload }
/// verify: true
/// subject_alt_names:              # instead of the server name: a SAN one of these accepts
///   - uri: {exact: "spiffe://cluster.local/ns/shop/sa/cart"}
/// handshake_timeout: 10s
/// guomi:                          # RFC 8998 (needs the `guomi` cargo feature)
///   suites: side_by_side          # or only
///   roots: { files: [certs/sm2-ca.pem] }      # SM2 roots: files or a secret
///   client_cert: { cert: certs/sm2-client.pem, key: certs/sm2-client.key }
/// ```
///
/// # Example
/// ```
/// use proxy_tls::config::{KeyPair, OriginationConfig, Roots};
///
/// let mut cfg = OriginationConfig::new(Roots::files(["certs/ca.pem"]));
/// cfg.server_name = Some("api.internal".into());
/// cfg.client_cert = Some(KeyPair::files("certs/client.pem", "certs/client.key"));
/// cfg.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginationConfig {
    /// The SNI name sent and the name the server certificate must hold; default: the
    /// endpoint's IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Send SNI (on by default; never sent for an IP address).
    #[serde(default = "yes")]
    pub sni: bool,
    /// Trusted roots; default: the system's.
    #[serde(default)]
    pub roots: Roots,
    /// ALPN protocols offered, in preference order; empty: the cluster's protocol
    /// when the registry builds it (`h2`, `http/1.1`), else no ALPN.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
    /// A client certificate presented to the upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<KeyPair>,
    /// Verify the server certificate (on by default; off only for testing).
    #[serde(default = "yes")]
    pub verify: bool,
    /// When not empty, the server certificate must hold a subject-alt-name one of these
    /// accepts, and its names are not checked against `server_name` (the chain is
    /// still verified against `roots`): Envoy's `match_typed_subject_alt_names`, for
    /// SPIFFE ids. Needs `verify`; not with `guomi`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<crate::san::SanMatch>,
    /// Protocol versions offered (at least one).
    #[serde(default = "default_versions")]
    pub versions: Vec<TlsVersion>,
    /// The handshake must complete within this.
    #[serde(default = "default_handshake_timeout", with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Live reloading of the roots and client certificate.
    #[serde(default)]
    pub rotation: RotationConfig,
    /// Guomi (RFC 8998) origination: the SM4 suites, curveSM2 and `sm2sig_sm3`
    /// offered beside the international ones or alone, SM2 server chains checked
    /// against SM2 roots. Needs the `guomi` cargo feature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guomi: Option<GuomiOriginationConfig>,
}

/// The Guomi part of an origination config.
///
/// ```yaml
/// suites: side_by_side     # default; or only
/// roots: { files: [certs/sm2-ca.pem] }
/// client_cert: { cert: certs/sm2-client.pem, key: certs/sm2-client.key }   # or { secret: NAME }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuomiOriginationConfig {
    /// Whether the international suites are offered too.
    #[serde(default)]
    pub suites: GuomiSuites,
    /// SM2 CA certificates an SM2 server certificate must chain to (`files` or
    /// `secret`; `system` and `webpki` hold no SM2 roots).
    pub roots: Roots,
    /// An SM2 certificate and key presented when the server asks for a client
    /// certificate and accepts `sm2sig_sm3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<KeyPair>,
}

impl GuomiOriginationConfig {
    /// Guomi beside the international suites, SM2 servers checked against `roots`.
    pub fn new(roots: Roots) -> Self {
        Self {
            suites: GuomiSuites::SideBySide,
            roots,
            client_cert: None,
        }
    }
}

/// Which suites a Guomi origination offers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuomiSuites {
    /// TLS_SM4_GCM_SM3 and TLS_SM4_CCM_SM3 first (curveSM2 the first key share,
    /// `sm2sig_sm3` first), then the international suites, groups and schemes of
    /// `versions`: a Guomi server answers with SM4, any other with AES or ChaCha20
    /// (after a HelloRetryRequest for its own group). SM2 server certificates are
    /// checked against `guomi.roots`, the others against `roots`.
    #[default]
    SideBySide,
    /// Only the RFC 8998 suites, TLS 1.3 only; `roots` and `client_cert` are unused.
    Only,
}

impl Default for OriginationConfig {
    fn default() -> Self {
        Self::new(Roots::default())
    }
}

impl OriginationConfig {
    /// A config trusting `roots`, every other setting at its default.
    pub fn new(roots: Roots) -> Self {
        Self {
            server_name: None,
            sni: true,
            roots,
            alpn: Vec::new(),
            client_cert: None,
            verify: true,
            subject_alt_names: Vec::new(),
            versions: default_versions(),
            handshake_timeout: default_handshake_timeout(),
            rotation: RotationConfig::default(),
            guomi: None,
        }
    }

    /// Maps every file path of the config (roots, client certificates, Guomi roots).
    pub fn resolve_paths(&mut self, resolve: impl Fn(&Path) -> PathBuf) {
        self.roots.resolve_paths(&resolve);
        if let Some(c) = &mut self.client_cert {
            c.resolve_paths(&resolve);
        }
        if let Some(g) = &mut self.guomi {
            g.roots.resolve_paths(&resolve);
            if let Some(c) = &mut g.client_cert {
                c.resolve_paths(&resolve);
            }
        }
    }
}
