//! Certificate material: PEM parsing, validation (parseable, key matches certificate,
//! within its validity period) and loading from the sources a config names (files,
//! a [`SecretSource`], the system's or Mozilla's roots), errors naming the field.

use std::{
    path::Path,
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
    config::{KeyPair, Roots},
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

/// Reads the PEM texts of `roots` (files or a secret) with their source names and
/// the field each came from (`{field}.files[i]`, `{field}.secret`).
pub(crate) fn roots_pem(
    roots: &Roots,
    field: &str,
    secrets: &dyn SecretSource,
) -> Result<Vec<(Vec<u8>, String, String)>, ConfigBuildError> {
    match roots {
        Roots::Files(files) => files
            .iter()
            .enumerate()
            .map(|(i, path)| {
                let field = format!("{}[{i}]", join(field, "files"));
                match read_file(path) {
                    Ok(pem) => Ok((pem, path.display().to_string(), field)),
                    Err(e) => Err(ConfigBuildError::material(field, e)),
                }
            })
            .collect(),
        Roots::Secret(name) => {
            let field = join(field, "secret");
            let s = secret(secrets, name).map_err(|e| ConfigBuildError::material(&field, e))?;
            let source_name = format!("secret {name}");
            match &s.roots {
                Some(pem) => Ok(vec![(pem.to_vec(), source_name, field)]),
                None => Err(ConfigBuildError::material(
                    field,
                    MaterialError::NoCertificate { source_name },
                )),
            }
        }
        Roots::System | Roots::Webpki => Ok(Vec::new()),
    }
}

/// Reads `roots` into a store; errors name the field (`{field}.files[i]`,
/// `{field}.secret`, or `field` for the system store).
///
/// # Errors
/// An unreadable file, a missing secret, no certificate, one outside its validity
/// period, none usable as a trust anchor, or an empty system store.
pub(crate) fn load_roots(
    roots: &Roots,
    field: &str,
    secrets: &dyn SecretSource,
) -> Result<RootCertStore, ConfigBuildError> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::Files(_) | Roots::Secret(_) => {
            for (pem, name, field) in roots_pem(roots, field, secrets)? {
                let found = roots_from_pem(&pem, &name)
                    .map_err(|e| ConfigBuildError::material(field, e))?;
                store.roots.extend(found.roots);
            }
        }
        Roots::Webpki => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Roots::System => {
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(native.certs);
            if added == 0 {
                return Err(ConfigBuildError::material(
                    field,
                    MaterialError::Roots {
                        source_name: "the system trust store".into(),
                        reason: native
                            .errors
                            .first()
                            .map_or_else(|| "empty".to_owned(), ToString::to_string),
                    },
                ));
            }
        }
    }
    Ok(store)
}

/// `base.name`, or `name` alone when `base` is empty.
pub(crate) fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_owned()
    } else {
        format!("{base}.{name}")
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
    if let Some(i) = certs.iter().position(has_sm2_key) {
        // webpki would take it as a trust anchor and then fail every SM2 chain at
        // handshake time ("no shared cipher" or a bad signature): refuse it here.
        return Err(MaterialError::Roots {
            source_name: source_name.to_owned(),
            reason: format!(
                "certificate {i} has an SM2 (Guomi) key, which international roots cannot \
                 use; give SM2 roots in the guomi section (guomi.roots for origination, \
                 guomi.client_roots for termination)"
            ),
        });
    }
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

/// Whether the certificate's public key is SM2: `id-ecPublicKey` over the SM2 curve
/// (`1.2.156.10197.1.301`), or the SM2 OID as the algorithm itself.
fn has_sm2_key(cert: &CertificateDer<'_>) -> bool {
    use x509_cert::der::asn1::ObjectIdentifier;
    const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
    const SM2_CURVE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.301");
    let Ok(cert) = x509_cert::Certificate::from_der(cert.as_ref()) else {
        return false;
    };
    let alg = &cert.tbs_certificate.subject_public_key_info.algorithm;
    alg.oid == SM2_CURVE
        || (alg.oid == EC_PUBLIC_KEY
            && alg
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
                == Some(SM2_CURVE))
}

/// Reads SM2 `roots` (files or a secret) into a Guomi root store; errors name the
/// field (`{field}.files[i]`, `{field}.secret`).
///
/// # Errors
/// An unreadable file, a missing secret, no certificate, one outside its validity
/// period, or one the SM2 store refuses.
#[cfg(feature = "guomi")]
pub(crate) fn load_sm2_roots(
    roots: &Roots,
    field: &str,
    secrets: &dyn SecretSource,
) -> Result<crate::guomi::Sm2RootStore, ConfigBuildError> {
    let mut store = crate::guomi::Sm2RootStore::new();
    for (pem, name, field) in roots_pem(roots, field, secrets)? {
        let certs = parse_certs(&pem, &name)
            .and_then(|c| {
                check_roots_validity(&c, &name, unix_now())?;
                Ok(c)
            })
            .map_err(|e| ConfigBuildError::material(&field, e))?;
        for cert in &certs {
            store.add(cert).map_err(|source| ConfigBuildError::Guomi {
                field: field.clone(),
                source,
            })?;
        }
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
    fn an_unreadable_file_is_named_with_its_field() {
        let pair = KeyPair::files("/nonexistent/c.pem", "/nonexistent/k.pem");
        let secrets = crate::rotation::MemorySecrets::default();
        let err = load_key_pair(&pair, "certificates[1]", &secrets, &provider())
            .err()
            .unwrap();
        assert_eq!(err.field(), "certificates[1].cert");
        assert!(
            crate::error_chain(&err)
                .starts_with("certificates[1].cert: cannot read /nonexistent/c.pem: "),
            "{}",
            crate::error_chain(&err)
        );
        let roots = Roots::files(["/nonexistent/ca.pem"]);
        let err = load_roots(&roots, "client_auth.roots", &secrets)
            .err()
            .unwrap();
        assert_eq!(err.field(), "client_auth.roots.files[0]");
        let err = load_roots(&Roots::secret("ca"), "roots", &secrets)
            .err()
            .unwrap();
        assert_eq!(
            crate::error_chain(&err),
            "roots.secret: secret ca: not provided by the secret source"
        );
    }

    #[test]
    fn a_mismatched_key_file_is_the_key_fields_fault() {
        let dir = std::env::temp_dir().join(format!("proxy-tls-mismatch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (c, _) = pair("a.test");
        let (_, k) = pair("b.test");
        std::fs::write(dir.join("a.pem"), c).unwrap();
        std::fs::write(dir.join("b.key"), k).unwrap();
        let secrets = crate::rotation::MemorySecrets::default();
        let pair = KeyPair::files(dir.join("a.pem"), dir.join("b.key"));
        let err = load_key_pair(&pair, "", &secrets, &provider())
            .err()
            .unwrap();
        assert_eq!(err.field(), "key");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
