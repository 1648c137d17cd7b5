//! Certificate material: PEM parsing, validation (parseable, key matches certificate,
//! within its validity period) and loading from the sources a config names (files,
//! a [`SecretSource`], the system's or Mozilla's roots), errors naming the field.

use std::{
    path::Path,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use proxy_core::config::join_path as join;
use rustls::{
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    sign::CertifiedKey,
};
use x509_cert::der::Decode;

use crate::{
    config::KeyPair,
    error::{ConfigBuildError, MaterialError},
    rotation::{Secret, SecretSource},
};

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
    let chain = certificate_chain(cert_pem, cert_name)?;
    signing_pair(chain, key_pem, cert_name, key_name, provider)
}

/// A chain that parses, whose leaf is valid now.
fn certificate_chain(
    cert_pem: &[u8],
    cert_name: &str,
) -> Result<Vec<CertificateDer<'static>>, MaterialError> {
    let chain = parse_certs(cert_pem, cert_name)?;
    check_validity(&chain[0], cert_name, unix_now())?;
    Ok(chain)
}

/// The chain with its key, which must load with `provider` and match the leaf.
fn signing_pair(
    chain: Vec<CertificateDer<'static>>,
    key_pem: &[u8],
    cert_name: &str,
    key_name: &str,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, MaterialError> {
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

/// Loads and validates a certificate chain and key; errors name the field they came
/// from: `{field}.cert`, `{field}.key` (a key that does not match its certificate
/// too) or `{field}.secret`. `field` is empty when the pair is the section's field
/// itself.
///
/// # Errors
/// Unreadable files, a missing secret, or a refused pair ([`certified_key`]).
pub(crate) fn load_key_pair(
    pair: &KeyPair,
    field: &str,
    secrets: &dyn SecretSource,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, ConfigBuildError> {
    match pair {
        KeyPair::Files { cert, key } => {
            let (cert_field, key_field) = (join(field, "cert"), join(field, "key"));
            let cert_name = cert.display().to_string();
            let key_name = key.display().to_string();
            let at_cert = |e| ConfigBuildError::material(&cert_field, e);
            let at_key = |e| ConfigBuildError::material(&key_field, e);
            let cert_pem = read_file(cert).map_err(at_cert)?;
            let key_pem = read_file(key).map_err(at_key)?;
            let chain = certificate_chain(&cert_pem, &cert_name).map_err(at_cert)?;
            signing_pair(chain, &key_pem, &cert_name, &key_name, provider).map_err(at_key)
        }
        KeyPair::Secret(name) => {
            let at = |e| ConfigBuildError::material(join(field, "secret"), e);
            let s = secret(secrets, name).map_err(at)?;
            let label = format!("secret {name}");
            let (Some(cert), Some(key)) = (&s.cert_chain, &s.key) else {
                return Err(at(MaterialError::NoCertificate { source_name: label }));
            };
            certified_key(cert, &label, key, &label, provider).map_err(at)
        }
    }
}

/// The DNS names of a certificate's subjectAltName (wildcards included as written).
pub fn dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    crate::identity::PeerIdentityParts::from_der(cert).map_or_else(Vec::new, |p| p.dns_sans)
}

mod roots;
#[cfg(test)]
mod tests;

pub(crate) use roots::load_roots;
#[cfg(feature = "guomi")]
pub(crate) use roots::load_sm2_roots;
pub use roots::roots_from_pem;
