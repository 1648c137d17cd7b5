//! Certificate material: PEM parsing, validation (parseable, key matches certificate,
//! within its validity period) and the sources it is read from (files or a
//! [`SecretSource`]).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use rustls::{
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    sign::CertifiedKey,
    RootCertStore,
};
use x509_cert::der::Decode;

use crate::{
    error::MaterialError,
    rotation::{Secret, SecretSource},
};

/// Where one certificate-and-key pair is read from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyPairSource {
    /// Two PEM files.
    Files {
        /// The certificate chain.
        cert: PathBuf,
        /// The private key.
        key: PathBuf,
    },
    /// A named secret (PEM chain and key).
    Secret(String),
}

/// Where a root set is read from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RootsSource {
    /// A PEM file of CA certificates.
    File(PathBuf),
    /// A named secret holding PEM CA certificates (`Secret::roots`).
    Secret(String),
}

/// Reads a whole file, naming it on failure.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, MaterialError> {
    std::fs::read(path).map_err(|source| MaterialError::Read {
        path: path.to_owned(),
        source,
    })
}

fn secret(secrets: &dyn SecretSource, name: &str) -> Result<Arc<Secret>, MaterialError> {
    secrets
        .get(name)
        .ok_or_else(|| MaterialError::MissingSecret {
            name: name.to_owned(),
        })
}

/// Parses every certificate in a PEM text; at least one must be present.
///
/// # Errors
/// [`MaterialError::NoCertificate`], [`MaterialError::Pem`] or
/// [`MaterialError::BadCertificate`] naming `source_name`.
pub fn parse_certs(
    pem: &[u8],
    source_name: &str,
) -> Result<Vec<CertificateDer<'static>>, MaterialError> {
    let mut certs = Vec::new();
    for (index, item) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let cert = item.map_err(|e| MaterialError::Pem {
            source_name: source_name.to_owned(),
            reason: e.to_string(),
        })?;
        x509_cert::Certificate::from_der(&cert).map_err(|e| MaterialError::BadCertificate {
            source_name: source_name.to_owned(),
            index,
            reason: e.to_string(),
        })?;
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(MaterialError::NoCertificate {
            source_name: source_name.to_owned(),
        });
    }
    Ok(certs)
}

/// Parses the first private key in a PEM text.
///
/// # Errors
/// [`MaterialError::NoKey`] or [`MaterialError::Pem`] naming `source_name`.
pub fn parse_key(pem: &[u8], source_name: &str) -> Result<PrivateKeyDer<'static>, MaterialError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => MaterialError::NoKey {
            source_name: source_name.to_owned(),
        },
        e => MaterialError::Pem {
            source_name: source_name.to_owned(),
            reason: e.to_string(),
        },
    })
}

/// The current time in Unix seconds.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Refuses a leaf certificate outside its validity period at `now` (Unix seconds).
///
/// # Errors
/// [`MaterialError::Expired`] (or `BadCertificate` when it cannot be parsed).
pub fn check_validity(
    cert: &CertificateDer<'_>,
    source_name: &str,
    now: u64,
) -> Result<(), MaterialError> {
    let parsed =
        x509_cert::Certificate::from_der(cert).map_err(|e| MaterialError::BadCertificate {
            source_name: source_name.to_owned(),
            index: 0,
            reason: e.to_string(),
        })?;
    let validity = &parsed.tbs_certificate.validity;
    let not_after = validity.not_after.to_unix_duration().as_secs();
    let not_before = validity.not_before.to_unix_duration().as_secs();
    if now > not_after {
        return Err(MaterialError::Expired {
            source_name: source_name.to_owned(),
            reason: format!("expired at {not_after} (unix seconds; now {now})"),
        });
    }
    if now < not_before {
        return Err(MaterialError::Expired {
            source_name: source_name.to_owned(),
            reason: format!("not valid before {not_before} (unix seconds; now {now})"),
        });
    }
    Ok(())
}

/// Refuses a root file holding a certificate outside its validity period at `now`,
/// naming the certificate's position in the file.
///
/// # Errors
/// [`MaterialError::Expired`] (or `BadCertificate` when one cannot be parsed).
pub fn check_roots_validity(
    roots: &[CertificateDer<'_>],
    source_name: &str,
    now: u64,
) -> Result<(), MaterialError> {
    for (i, root) in roots.iter().enumerate() {
        check_validity(root, source_name, now).map_err(|e| match e {
            MaterialError::Expired {
                source_name,
                reason,
            } => MaterialError::Expired {
                source_name,
                reason: format!("{i} (a root) {reason}"),
            },
            MaterialError::BadCertificate {
                source_name,
                reason,
                ..
            } => MaterialError::BadCertificate {
                source_name,
                index: i,
                reason,
            },
            other => other,
        })?;
    }
    Ok(())
}

/// Builds a validated [`CertifiedKey`]: the chain parses, the key loads with
/// `provider`, the key matches the leaf, and the leaf is valid now.
///
/// # Errors
/// The first [`MaterialError`] found, naming the certificate or key source.
pub fn certified_key(
    cert_pem: &[u8],
    cert_name: &str,
    key_pem: &[u8],
    key_name: &str,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, MaterialError> {
    let chain = parse_certs(cert_pem, cert_name)?;
    check_validity(&chain[0], cert_name, unix_now())?;
    let key = parse_key(key_pem, key_name)?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|source| MaterialError::UnsupportedKey {
            source_name: key_name.to_owned(),
            source,
        })?;
    let ck = CertifiedKey::new(chain, signing_key);
    match ck.keys_match() {
        Ok(()) => Ok(ck),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(ck),
        Err(_) => Err(MaterialError::KeyMismatch {
            cert: cert_name.to_owned(),
            key: key_name.to_owned(),
        }),
    }
}

impl KeyPairSource {
    /// A human name for errors and logs.
    pub fn describe(&self) -> String {
        match self {
            Self::Files { cert, key } => format!("{} + {}", cert.display(), key.display()),
            Self::Secret(name) => format!("secret {name}"),
        }
    }

    /// Reads and validates the pair.
    ///
    /// # Errors
    /// Unreadable files, a missing secret, or a refused pair ([`certified_key`]).
    pub fn load(
        &self,
        secrets: &dyn SecretSource,
        provider: &CryptoProvider,
    ) -> Result<CertifiedKey, MaterialError> {
        match self {
            Self::Files { cert, key } => {
                let cert_pem = read_file(cert)?;
                let key_pem = read_file(key)?;
                certified_key(
                    &cert_pem,
                    &cert.display().to_string(),
                    &key_pem,
                    &key.display().to_string(),
                    provider,
                )
            }
            Self::Secret(name) => {
                let s = secret(secrets, name)?;
                let (Some(cert), Some(key)) = (&s.cert_chain, &s.key) else {
                    return Err(MaterialError::NoCertificate {
                        source_name: format!("secret {name}"),
                    });
                };
                let label = format!("secret {name}");
                certified_key(cert, &label, key, &label, provider)
            }
        }
    }
}

impl RootsSource {
    /// Reads the roots into a store.
    ///
    /// # Errors
    /// Unreadable file, missing secret, no certificate, or none usable as a trust anchor.
    pub fn load(&self, secrets: &dyn SecretSource) -> Result<RootCertStore, MaterialError> {
        let (pem, name) = match self {
            Self::File(path) => (read_file(path)?, path.display().to_string()),
            Self::Secret(name) => {
                let s = secret(secrets, name)?;
                let Some(roots) = &s.roots else {
                    return Err(MaterialError::NoCertificate {
                        source_name: format!("secret {name}"),
                    });
                };
                (roots.to_vec(), format!("secret {name}"))
            }
        };
        roots_from_pem(&pem, &name)
    }
}

/// Builds a root store from PEM CA certificates.
///
/// # Errors
/// No certificate, a malformed one, one outside its validity period (an expired root
/// would refuse every peer it should admit), or none usable as a trust anchor.
pub fn roots_from_pem(pem: &[u8], source_name: &str) -> Result<RootCertStore, MaterialError> {
    let certs = parse_certs(pem, source_name)?;
    check_roots_validity(&certs, source_name, unix_now())?;
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(MaterialError::Roots {
            source_name: source_name.to_owned(),
            reason: "no certificate is usable as a trust anchor".into(),
        });
    }
    Ok(store)
}

/// The DNS names of a certificate's subjectAltName (wildcards included as written).
pub fn dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    crate::identity::PeerIdentityParts::from_der(cert).map_or_else(Vec::new, |p| p.dns_sans)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn provider() -> CryptoProvider {
        rustls::crypto::ring::default_provider()
    }

    fn pair(name: &str) -> (String, String) {
        let ck = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        (ck.cert.pem(), ck.key_pair.serialize_pem())
    }

    #[test]
    fn a_matching_pair_loads() {
        let (c, k) = pair("a.test");
        let ck = certified_key(c.as_bytes(), "a.pem", k.as_bytes(), "a.key", &provider()).unwrap();
        assert_eq!(dns_names(&ck.cert[0]), vec!["a.test".to_owned()]);
    }

    #[test]
    fn a_mismatched_key_is_refused_naming_both_files() {
        let (c, _) = pair("a.test");
        let (_, k) = pair("b.test");
        let err = certified_key(c.as_bytes(), "a.pem", k.as_bytes(), "b.key", &provider())
            .err()
            .unwrap();
        assert!(matches!(err, MaterialError::KeyMismatch { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "b.key: private key does not match the certificate in a.pem"
        );
    }

    #[test]
    fn an_expired_certificate_is_refused() {
        let mut params = rcgen::CertificateParams::new(vec!["old.test".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let err = certified_key(
            cert.pem().as_bytes(),
            "old.pem",
            key.serialize_pem().as_bytes(),
            "old.key",
            &provider(),
        )
        .err()
        .unwrap();
        assert!(matches!(err, MaterialError::Expired { .. }), "{err}");
        assert!(err
            .to_string()
            .starts_with("old.pem: certificate expired at"));
    }

    #[test]
    fn an_expired_root_is_refused_naming_the_file_and_the_root() {
        let ca = |not_after: (i32, u8, u8)| {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
            let key = rcgen::KeyPair::generate().unwrap();
            params.self_signed(&key).unwrap().pem()
        };
        let good = ca((2099, 1, 1));
        assert!(roots_from_pem(good.as_bytes(), "ca.pem").is_ok());
        let bundle = format!("{good}{}", ca((2001, 1, 1)));
        let err = roots_from_pem(bundle.as_bytes(), "ca.pem").err().unwrap();
        assert!(matches!(err, MaterialError::Expired { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("ca.pem: certificate 1 (a root) expired at"),
            "{err}"
        );
    }

    #[test]
    fn garbage_is_refused() {
        let err = parse_certs(b"not pem", "x.pem").err().unwrap();
        assert!(matches!(err, MaterialError::NoCertificate { .. }));
        let err = parse_key(b"", "x.key").err().unwrap();
        assert!(matches!(err, MaterialError::NoKey { .. }));
        let bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = parse_certs(bad.as_bytes(), "y.pem").err().unwrap();
        assert!(matches!(err, MaterialError::BadCertificate { .. }), "{err}");
    }

    #[test]
    fn an_unreadable_file_is_named() {
        let src = KeyPairSource::Files {
            cert: "/nonexistent/c.pem".into(),
            key: "/nonexistent/k.pem".into(),
        };
        let secrets = crate::rotation::MemorySecrets::default();
        let err = src.load(&secrets, &provider()).err().unwrap();
        assert_eq!(err.to_string(), "/nonexistent/c.pem: unreadable");
    }
}
