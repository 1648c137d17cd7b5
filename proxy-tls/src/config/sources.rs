//! Where certificate material comes from: trusted roots ([`Roots`]), a certificate
//! and its key ([`KeyPair`]), and a listener certificate ([`CertificateConfig`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Trusted CA certificates, from one source. The same shape wherever roots are
/// named: `client_auth.roots`, the origination `roots`, `guomi.client_roots`.
///
/// ```yaml
/// roots: { files: [certs/ca.pem, certs/other-ca.pem] }   # PEM files
/// roots: { secret: mesh-ca }                             # from the secret source
/// roots: system                                          # the operating system's store
/// roots: webpki                                          # Mozilla's, compiled in
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Roots {
    /// PEM files of CA certificates (at least one), resolved from the config file's
    /// directory when relative.
    Files(Vec<PathBuf>),
    /// A secret of the [`SecretSource`](crate::rotation::SecretSource) holding PEM CA
    /// certificates ([`Secret::roots`](crate::rotation::Secret::roots)).
    Secret(String),
    /// The operating system's trust store.
    #[default]
    System,
    /// The Mozilla root program, compiled in (webpki-roots).
    Webpki,
}

impl Roots {
    /// PEM files of CA certificates.
    pub fn files<P: Into<PathBuf>>(files: impl IntoIterator<Item = P>) -> Self {
        Self::Files(files.into_iter().map(Into::into).collect())
    }

    /// A secret of the secret source.
    pub fn secret(name: impl Into<String>) -> Self {
        Self::Secret(name.into())
    }

    /// Maps every file path (resolving relative ones from a config's directory).
    pub fn resolve_paths(&mut self, resolve: &impl Fn(&Path) -> PathBuf) {
        if let Self::Files(files) = self {
            for f in files {
                *f = resolve(f);
            }
        }
    }
}

/// A certificate chain and its private key: two PEM files, or a named secret.
///
/// ```yaml
/// client_cert: { cert: certs/client.pem, key: certs/client.key }
/// client_cert: { secret: workload }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "KeyPairRepr", into = "KeyPairRepr")]
pub enum KeyPair {
    /// PEM files, resolved from the config file's directory when relative.
    Files {
        /// The certificate chain, leaf first.
        cert: PathBuf,
        /// The private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
    /// A secret of the secret source holding the chain and the key
    /// ([`Secret::key_pair`](crate::rotation::Secret::key_pair)).
    Secret(String),
}

impl KeyPair {
    /// Two PEM files.
    pub fn files(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self::Files {
            cert: cert.into(),
            key: key.into(),
        }
    }

    /// A secret of the secret source.
    pub fn secret(name: impl Into<String>) -> Self {
        Self::Secret(name.into())
    }

    /// Maps both file paths.
    pub fn resolve_paths(&mut self, resolve: &impl Fn(&Path) -> PathBuf) {
        if let Self::Files { cert, key } = self {
            *cert = resolve(cert);
            *key = resolve(key);
        }
    }
}

/// How a [`KeyPair`] is written: `{cert, key}` or `{secret}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyPairRepr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl TryFrom<KeyPairRepr> for KeyPair {
    type Error = String;

    fn try_from(r: KeyPairRepr) -> Result<Self, String> {
        // "missing field `x`" is serde's own wording: core's parser then reports the
        // path of the missing field itself (`certificates[1].key: missing (required)`).
        match (r.cert, r.key, r.secret) {
            (Some(cert), Some(key), None) => Ok(Self::Files { cert, key }),
            (None, None, Some(name)) => Ok(Self::Secret(name)),
            (Some(_), None, None) => Err("missing field `key`".into()),
            (None, Some(_), None) => Err("missing field `cert`".into()),
            (None, None, None) => Err("give `cert` and `key` (PEM files), or `secret`".into()),
            (_, _, Some(_)) => Err("give `cert` and `key`, or `secret`, not both".into()),
        }
    }
}

impl From<KeyPair> for KeyPairRepr {
    fn from(p: KeyPair) -> Self {
        match p {
            KeyPair::Files { cert, key } => Self {
                cert: Some(cert),
                key: Some(key),
                secret: None,
            },
            KeyPair::Secret(name) => Self {
                secret: Some(name),
                ..Self::default()
            },
        }
    }
}

/// One server certificate of a listener: a [`KeyPair`] (written inline, `cert` and
/// `key` or `secret`) and the names it serves.
///
/// ```yaml
/// certificates:
///   - { cert: certs/a.pem, key: certs/a.key }                     # names from its SANs
///   - { cert: certs/b.pem, key: certs/b.key, server_names: ["*.b.test"] }
///   - { secret: fallback, default: true }                         # from the secret source
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "CertificateRepr", into = "CertificateRepr")]
pub struct CertificateConfig {
    /// The chain and key.
    pub key_pair: KeyPair,
    /// SNI names this certificate serves (`*.example.com` for a wildcard); empty: the
    /// DNS names of the leaf's subjectAltName.
    pub server_names: Vec<String>,
    /// Serve this certificate when no name matches (default: the first certificate).
    pub default: bool,
}

impl CertificateConfig {
    /// A certificate from two PEM files, serving the names of its SANs.
    pub fn files(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        KeyPair::files(cert, key).into()
    }

    /// A certificate from a secret of the secret source, serving the names of its SANs.
    pub fn secret(name: impl Into<String>) -> Self {
        KeyPair::secret(name).into()
    }

    /// Serves `names` instead of the names of the certificate's SANs.
    #[must_use]
    pub fn server_names<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.server_names = names.into_iter().map(Into::into).collect();
        self
    }

    /// Makes this the certificate served when no name matches.
    #[must_use]
    pub fn as_default(mut self) -> Self {
        self.default = true;
        self
    }
}

impl From<KeyPair> for CertificateConfig {
    fn from(key_pair: KeyPair) -> Self {
        Self {
            key_pair,
            server_names: Vec::new(),
            default: false,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CertificateRepr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    server_names: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    default: bool,
}

impl TryFrom<CertificateRepr> for CertificateConfig {
    type Error = String;

    fn try_from(r: CertificateRepr) -> Result<Self, String> {
        let key_pair = KeyPair::try_from(KeyPairRepr {
            cert: r.cert,
            key: r.key,
            secret: r.secret,
        })?;
        Ok(Self {
            key_pair,
            server_names: r.server_names,
            default: r.default,
        })
    }
}

impl From<CertificateConfig> for CertificateRepr {
    fn from(c: CertificateConfig) -> Self {
        let KeyPairRepr { cert, key, secret } = c.key_pair.into();
        Self {
            cert,
            key,
            secret,
            server_names: c.server_names,
            default: c.default,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use proxy_core::config::{from_yaml, to_yaml};

    use super::*;

    #[test]
    fn roots_are_a_one_key_map_or_a_name() {
        assert_eq!(
            from_yaml::<Roots>("{files: [a.pem, b.pem]}").unwrap(),
            Roots::files(["a.pem", "b.pem"])
        );
        assert_eq!(
            from_yaml::<Roots>("{secret: ca}").unwrap(),
            Roots::secret("ca")
        );
        assert_eq!(from_yaml::<Roots>("system").unwrap(), Roots::System);
        assert_eq!(from_yaml::<Roots>("webpki").unwrap(), Roots::Webpki);
        assert!(from_yaml::<Roots>("{files: [a.pem], system: true}").is_err());
        assert!(from_yaml::<Roots>("a.pem").is_err());
    }

    #[test]
    fn a_certificate_is_files_or_a_secret_and_names_what_is_missing() {
        let c: CertificateConfig =
            from_yaml("{cert: a.pem, key: a.key, server_names: [a.test]}").unwrap();
        assert_eq!(
            c,
            CertificateConfig::files("a.pem", "a.key").server_names(["a.test"])
        );
        let c: CertificateConfig = from_yaml("{secret: web, default: true}").unwrap();
        assert_eq!(c, CertificateConfig::secret("web").as_default());
        let e = from_yaml::<Vec<CertificateConfig>>("[{cert: a.pem, key: a.key}, {cert: b.pem}]")
            .unwrap_err();
        assert_eq!(e.to_string(), "[1].key: missing (required)");
        let e = from_yaml::<CertificateConfig>("{cert: a.pem, key: a.key, secret: s}").unwrap_err();
        assert!(e.reason.contains("not both"), "{e}");
        let e = from_yaml::<CertificateConfig>("{cert: a.pem, key: a.key, kee: x}").unwrap_err();
        assert_eq!(e.path, "kee", "{e}");
    }

    #[test]
    fn shapes_round_trip_through_yaml() {
        for c in [
            CertificateConfig::files("a.pem", "a.key").server_names(["*.a.test"]),
            CertificateConfig::secret("s").as_default(),
        ] {
            assert_eq!(
                from_yaml::<CertificateConfig>(&to_yaml(&c).unwrap()).unwrap(),
                c
            );
        }
        for r in [Roots::files(["x.pem"]), Roots::secret("ca"), Roots::System] {
            assert_eq!(from_yaml::<Roots>(&to_yaml(&r).unwrap()).unwrap(), r);
        }
    }
}
