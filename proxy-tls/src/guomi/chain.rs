//! SM2 certificate chains: the trusted roots ([`Sm2RootStore`]) and the checks of a
//! chain up to them.
//!
//! Certificates are signed with SM2-with-SM3 (`1.2.156.10197.1.501`, with or
//! without NULL parameters) under the default distinguishing identifier
//! `1234567812345678`.
//!
//! The checks follow what webpki does for other keys: validity period at
//! `now`, issuer by name and signature up to a configured root, CA basic
//! constraints and path length, keyCertSign key usage, extended key usage for
//! the role, no unknown critical extension, and the server name against the
//! subjectAltName entries.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DistinguishedName, Error, OtherError};
use sm2::dsa::signature::Verifier;
use sm2::dsa::VerifyingKey;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode, Encode, Header, Reader, SliceReader, Tag, Tagged};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAltName};
use x509_cert::Certificate;

use super::error::GuomiError;
use super::sign::signature_from_der;
use super::CERT_SM2_ID;

/// The SM2 curve (`sm2p256v1`), also used as an algorithm identifier.
pub(crate) const OID_SM2_CURVE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.156.10197.1.301");
/// SM2 signature with SM3.
pub(crate) const OID_SM2_WITH_SM3: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.156.10197.1.501");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const OID_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
const OID_EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const OID_SUBJECT_ALT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");
const OID_ANY_EKU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37.0");
pub(super) const OID_SERVER_AUTH: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
pub(super) const OID_CLIENT_AUTH: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");

/// Longest chain accepted, end entity and intermediates (the root not counted).
const MAX_CHAIN_LEN: usize = 6;

/// Most certificate signatures checked for one chain. A peer can send many
/// intermediates whose subject matches the issuer sought (up to rustls' 64 KiB
/// handshake message, about 150 SM2 certificates), each costing an SM2 verification
/// at every depth: past this budget the chain is refused (webpki has such a budget
/// too).
const MAX_SIGNATURE_CHECKS: usize = 32;

#[cfg(test)]
thread_local! {
    /// Signature checks made by [`verify_cert_signature`] on this thread (tests).
    pub(crate) static SIGNATURE_CHECKS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The error of a chain that used up [`MAX_SIGNATURE_CHECKS`].
fn budget_exceeded() -> Error {
    CertificateError::Other(OtherError(Arc::new(GuomiError::Certificate(format!(
        "more than {MAX_SIGNATURE_CHECKS} signature checks for one chain"
    )))))
    .into()
}

// === impl Sm2RootStore ===

/// Trusted SM2 root certificates.
#[derive(Clone, Debug, Default)]
pub struct Sm2RootStore {
    anchors: Vec<Anchor>,
}

#[derive(Clone, Debug)]
struct Anchor {
    subject: Vec<u8>,
    key: VerifyingKey,
}

impl Sm2RootStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a root certificate (DER). Its own signature is not checked: a
    /// root is trusted because it is configured.
    ///
    /// # Errors
    /// [`GuomiError::Certificate`] if it does not parse or has no SM2 key.
    pub fn add(&mut self, cert: &CertificateDer<'_>) -> Result<(), GuomiError> {
        let parsed = Certificate::from_der(cert.as_ref())
            .map_err(|e| GuomiError::Certificate(format!("root does not parse: {e}")))?;
        let subject = parsed
            .tbs_certificate
            .subject
            .to_der()
            .map_err(|e| GuomiError::Certificate(format!("root subject: {e}")))?;
        let key = sm2_public_key(&parsed, CERT_SM2_ID)
            .ok_or_else(|| GuomiError::Certificate("root has no SM2 public key".into()))?;
        self.anchors.push(Anchor { subject, key });
        Ok(())
    }

    /// Reads every certificate of a PEM file.
    ///
    /// # Errors
    /// [`GuomiError::Io`] if unreadable, [`GuomiError::Certificate`] if a
    /// certificate is not SM2 or the file holds none.
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Self, GuomiError> {
        let certs = super::config::read_certs(path.as_ref())?;
        let mut store = Self::new();
        for cert in &certs {
            store.add(cert)?;
        }
        Ok(store)
    }

    /// Reads every certificate of a PEM text (`source` names it in errors).
    ///
    /// # Errors
    /// [`GuomiError::Pem`] if it holds no certificate, [`GuomiError::Certificate`] if
    /// a certificate is not SM2.
    pub fn from_pem(pem: &[u8], source: impl AsRef<Path>) -> Result<Self, GuomiError> {
        let certs = super::config::certs_from_pem(pem, source.as_ref())?;
        let mut store = Self::new();
        for cert in &certs {
            store.add(cert)?;
        }
        Ok(store)
    }

    /// Number of roots.
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    /// Whether there is no root.
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// The root subjects, for a CertificateRequest's `certificate_authorities`.
    pub(super) fn subjects(&self) -> Vec<DistinguishedName> {
        self.anchors
            .iter()
            .map(|a| DistinguishedName::from(a.subject.clone()))
            .collect()
    }

    /// Verifies `end_entity` up to a root for `purpose` and returns the
    /// parsed end-entity certificate.
    pub(super) fn verify_chain(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        purpose: ObjectIdentifier,
    ) -> Result<Certificate, Error> {
        let ee = parse(end_entity)?;
        check_validity(&ee, now)?;
        check_critical_extensions(&ee)?;
        check_eku(&ee, purpose)?;
        let inters = intermediates
            .iter()
            .map(|c| parse(c).map(|p| (p, c.as_ref())))
            .collect::<Result<Vec<_>, _>>()?;

        let mut current: (&Certificate, &[u8]) = (&ee, end_entity.as_ref());
        let mut used = vec![false; inters.len()];
        let mut issuer_found_bad_sig = false;
        let mut budget = MAX_SIGNATURE_CHECKS;
        let mut check = |cert: &Certificate, der: &[u8], key: &VerifyingKey| {
            budget = budget.checked_sub(1).ok_or_else(budget_exceeded)?;
            Ok::<bool, Error>(verify_cert_signature(cert, der, key))
        };
        for depth in 0..MAX_CHAIN_LEN {
            let issuer_name = name_der(&current.0.tbs_certificate.issuer)?;
            for anchor in &self.anchors {
                if anchor.subject == issuer_name {
                    if check(current.0, current.1, &anchor.key)? {
                        return Ok(ee);
                    }
                    issuer_found_bad_sig = true;
                }
            }
            let mut next = None;
            for (i, (cand, _)) in inters.iter().enumerate() {
                if used[i] || name_der(&cand.tbs_certificate.subject)? != issuer_name {
                    continue;
                }
                let Some(key) = sm2_public_key(cand, CERT_SM2_ID) else {
                    continue;
                };
                if !check(current.0, current.1, &key)? {
                    issuer_found_bad_sig = true;
                    continue;
                }
                check_validity(cand, now)?;
                check_critical_extensions(cand)?;
                check_ca(cand, depth)?;
                check_eku(cand, purpose)?;
                next = Some(i);
                break;
            }
            match next {
                Some(i) => {
                    used[i] = true;
                    current = (&inters[i].0, inters[i].1);
                }
                None if issuer_found_bad_sig => {
                    return Err(CertificateError::BadSignature.into());
                }
                None => return Err(CertificateError::UnknownIssuer.into()),
            }
        }
        Err(CertificateError::UnknownIssuer.into())
    }
}

// === certificate helpers ===

pub(super) fn parse(cert: &CertificateDer<'_>) -> Result<Certificate, Error> {
    Certificate::from_der(cert.as_ref()).map_err(|_| CertificateError::BadEncoding.into())
}

fn name_der(name: &x509_cert::name::Name) -> Result<Vec<u8>, Error> {
    name.to_der()
        .map_err(|_| CertificateError::BadEncoding.into())
}

/// Whether the certificate carries an SM2 public key (parse failures count as SM2 so
/// that they reach the SM2 path and fail there, not in a fallback).
pub(super) fn is_sm2_cert(cert: &CertificateDer<'_>) -> bool {
    Certificate::from_der(cert.as_ref())
        .map(|c| sm2_public_key(&c, CERT_SM2_ID).is_some())
        .unwrap_or(true)
}

/// The certificate's SM2 public key under distinguishing id `id`. Accepts
/// `id-ecPublicKey` with the SM2 curve and the SM2 OID as algorithm.
pub(crate) fn sm2_public_key(cert: &Certificate, id: &str) -> Option<VerifyingKey> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let is_sm2 = match spki.algorithm.oid {
        OID_EC_PUBLIC_KEY => {
            spki.algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
                == Some(OID_SM2_CURVE)
        }
        OID_SM2_CURVE => true,
        _ => false,
    };
    if !is_sm2 {
        return None;
    }
    let point = spki.subject_public_key.as_bytes()?;
    VerifyingKey::from_sec1_bytes(id, point).ok()
}

/// The DER `tbsCertificate` exactly as received (re-encoding could differ).
fn tbs_bytes(cert_der: &[u8]) -> Option<&[u8]> {
    let mut reader = SliceReader::new(cert_der).ok()?;
    let header = Header::decode(&mut reader).ok()?;
    if header.tag != Tag::Sequence {
        return None;
    }
    reader.tlv_bytes().ok()
}

/// Checks `cert`'s SM2-with-SM3 signature (parameters absent or NULL) with `issuer_key`.
fn verify_cert_signature(cert: &Certificate, cert_der: &[u8], issuer_key: &VerifyingKey) -> bool {
    #[cfg(test)]
    SIGNATURE_CHECKS.with(|n| n.set(n.get() + 1));
    let alg = &cert.signature_algorithm;
    let params_ok = match &alg.parameters {
        None => true,
        Some(any) => any.tag() == Tag::Null && any.value().is_empty(),
    };
    if alg.oid != OID_SM2_WITH_SM3 || !params_ok {
        return false;
    }
    // RFC 5280 4.1.1.2: the inner and outer algorithms must agree.
    if cert.tbs_certificate.signature.oid != alg.oid {
        return false;
    }
    let Some(tbs) = tbs_bytes(cert_der) else {
        return false;
    };
    let Some(sig_der) = cert.signature.as_bytes() else {
        return false;
    };
    let Some(sig) = signature_from_der(sig_der) else {
        return false;
    };
    issuer_key.verify(tbs, &sig).is_ok()
}

fn check_validity(cert: &Certificate, now: UnixTime) -> Result<(), Error> {
    let validity = &cert.tbs_certificate.validity;
    let now = now.as_secs();
    if now < validity.not_before.to_unix_duration().as_secs() {
        return Err(CertificateError::NotValidYet.into());
    }
    if now > validity.not_after.to_unix_duration().as_secs() {
        return Err(CertificateError::Expired.into());
    }
    Ok(())
}

fn extension<'c, T: Decode<'c>>(
    cert: &'c Certificate,
    oid: ObjectIdentifier,
) -> Result<Option<T>, Error> {
    let Some(exts) = &cert.tbs_certificate.extensions else {
        return Ok(None);
    };
    match exts.iter().find(|e| e.extn_id == oid) {
        None => Ok(None),
        Some(e) => T::from_der(e.extn_value.as_bytes())
            .map(Some)
            .map_err(|_| CertificateError::BadEncoding.into()),
    }
}

fn check_critical_extensions(cert: &Certificate) -> Result<(), Error> {
    let known = [
        OID_BASIC_CONSTRAINTS,
        OID_KEY_USAGE,
        OID_EXT_KEY_USAGE,
        OID_SUBJECT_ALT_NAME,
    ];
    let unknown_critical = cert
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .any(|e| e.critical && !known.contains(&e.extn_id));
    if unknown_critical {
        return Err(CertificateError::UnhandledCriticalExtension.into());
    }
    Ok(())
}

/// An issuer must be a CA allowed to sign certificates, with room in its path length.
/// `below` counts the intermediates already under it.
fn check_ca(cert: &Certificate, below: usize) -> Result<(), Error> {
    let bc: Option<BasicConstraints> = extension(cert, OID_BASIC_CONSTRAINTS)?;
    let Some(bc) = bc.filter(|bc| bc.ca) else {
        return Err(CertificateError::UnknownIssuer.into());
    };
    if let Some(limit) = bc.path_len_constraint {
        if below > usize::from(limit) {
            return Err(CertificateError::UnknownIssuer.into());
        }
    }
    let ku: Option<KeyUsage> = extension(cert, OID_KEY_USAGE)?;
    if ku.is_some_and(|ku| !ku.key_cert_sign()) {
        return Err(CertificateError::UnknownIssuer.into());
    }
    Ok(())
}

fn check_eku(cert: &Certificate, purpose: ObjectIdentifier) -> Result<(), Error> {
    let eku: Option<ExtendedKeyUsage> = extension(cert, OID_EXT_KEY_USAGE)?;
    match eku {
        Some(eku) if !eku.0.iter().any(|o| *o == purpose || *o == OID_ANY_EKU) => {
            Err(CertificateError::InvalidPurpose.into())
        }
        _ => Ok(()),
    }
}

pub(super) fn check_server_name(cert: &Certificate, name: &ServerName<'_>) -> Result<(), Error> {
    let san: Option<SubjectAltName> = extension(cert, OID_SUBJECT_ALT_NAME)?;
    let names = san.map(|s| s.0).unwrap_or_default();
    let matched = match name {
        ServerName::DnsName(dns) => {
            let wanted = dns.as_ref().trim_end_matches('.');
            names.iter().any(|n| match n {
                GeneralName::DnsName(pattern) => dns_matches(pattern.as_str(), wanted),
                _ => false,
            })
        }
        ServerName::IpAddress(ip) => {
            let wanted: Vec<u8> = match std::net::IpAddr::from(*ip) {
                std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
                std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
            };
            names.iter().any(|n| match n {
                GeneralName::IpAddress(bytes) => bytes.as_bytes() == wanted.as_slice(),
                _ => false,
            })
        }
        _ => false,
    };
    if matched {
        Ok(())
    } else {
        Err(CertificateError::NotValidForName.into())
    }
}

/// DNS name match, case-insensitive, `*` allowed as the whole leftmost label
/// and matching exactly one label.
pub(crate) fn dns_matches(pattern: &str, name: &str) -> bool {
    let pattern = pattern.trim_end_matches('.');
    match pattern.strip_prefix("*.") {
        Some(suffix) => match name.split_once('.') {
            Some((label, rest)) => {
                !label.is_empty() && !suffix.is_empty() && rest.eq_ignore_ascii_case(suffix)
            }
            None => false,
        },
        None => pattern.eq_ignore_ascii_case(name),
    }
}

#[cfg(test)]
mod tests {
    use rand_core::OsRng;
    use sm2::SecretKey;

    use rustls::client::danger::ServerCertVerifier;

    use super::super::test_pki::{issue, issue_with_key, Spec, SERVER_AUTH};
    use super::super::Sm2ServerVerifier;
    use super::*;

    #[test]
    fn decoy_intermediates_cost_a_bounded_number_of_signature_checks() {
        let root = issue(&Spec::ca("decoy root"), None);
        let inter = issue(&Spec::ca("decoy intermediate"), Some(&root));
        let leaf = issue(
            &Spec::leaf("a.test", &["a.test"], SERVER_AUTH),
            Some(&inter),
        );
        // 100 certificates named like the leaf's issuer, none holding its key: each
        // would cost an SM2 verification.
        let other = SecretKey::random(&mut OsRng);
        let decoy = issue_with_key(&Spec::ca("decoy intermediate"), Some(&root), other);
        let mut chain: Vec<CertificateDer<'static>> = vec![decoy.der; 100];
        chain.push(inter.der.clone());
        let mut store = Sm2RootStore::new();
        store.add(&root.der).unwrap_or_else(|e| panic!("{e}"));
        let verifier = Sm2ServerVerifier::new(Arc::new(store));
        let name = ServerName::try_from("a.test").unwrap_or_else(|e| panic!("{e}"));
        let now = UnixTime::now();

        SIGNATURE_CHECKS.with(|n| n.set(0));
        let res = verifier.verify_server_cert(&leaf.der, &chain, &name, &[], now);
        let checks = SIGNATURE_CHECKS.with(|n| n.get());
        assert!(res.is_err(), "a chain past the budget is refused");
        assert!(checks <= MAX_SIGNATURE_CHECKS, "{checks} signature checks");

        // The honest chain verifies well within the budget.
        SIGNATURE_CHECKS.with(|n| n.set(0));
        let res = verifier.verify_server_cert(&leaf.der, &[inter.der], &name, &[], now);
        assert!(res.is_ok(), "{res:?}");
        assert_eq!(SIGNATURE_CHECKS.with(|n| n.get()), 2);
    }
}
