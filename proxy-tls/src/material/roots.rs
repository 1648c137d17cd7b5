//! Root certificate stores from the sources a config names: files, secrets, the
//! system's or Mozilla's roots; SM2 (Guomi) roots kept apart.

use rustls::{pki_types::CertificateDer, RootCertStore};
use x509_cert::der::Decode;

use super::{check_roots_validity, join, parse_certs, read_file, secret, unix_now};
use crate::{
    config::Roots,
    error::{ConfigBuildError, MaterialError},
    rotation::SecretSource,
};

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
