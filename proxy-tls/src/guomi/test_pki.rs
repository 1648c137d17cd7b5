//! Test PKI: SM2 roots, intermediates and leaves made with RustCrypto, for
//! the unit tests and (through `#[path]`) the integration tests.

#![allow(dead_code, unreachable_pub)]

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand_core::OsRng;
use rustls::pki_types::CertificateDer;
use sm2::dsa::signature::Signer;
use sm2::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use sm2::SecretKey;
use x509_cert::der::asn1::{
    Any, BitString, Ia5String, ObjectIdentifier, OctetString, UintRef, UtcTime,
};
use x509_cert::der::{Decode, Encode, Tag};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectAltName,
};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};
use x509_cert::{Certificate, TbsCertificate, Version};

/// serverAuth.
pub const SERVER_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
/// clientAuth.
pub const CLIENT_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");
const SM2_WITH_SM3: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.501");
const CERT_ID: &str = "1234567812345678";

/// A certificate and its key.
#[derive(Clone)]
pub struct Issued {
    pub der: CertificateDer<'static>,
    pub key: SecretKey,
    pub subject: Name,
}

impl Issued {
    /// The certificate as PEM.
    pub fn cert_pem(&self) -> String {
        pem("CERTIFICATE", self.der.as_ref())
    }

    /// The key as PKCS#8 PEM.
    pub fn key_pem(&self) -> String {
        self.key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
    }

    /// The key as PKCS#8 DER.
    pub fn key_pkcs8(&self) -> Vec<u8> {
        self.key.to_pkcs8_der().unwrap().as_bytes().to_vec()
    }
}

/// What to put in a certificate.
#[derive(Clone)]
pub struct Spec {
    pub cn: String,
    pub dns: Vec<String>,
    pub ca: bool,
    pub path_len: Option<u8>,
    pub eku: Option<ObjectIdentifier>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// Write the SM2-with-SM3 algorithm with explicit NULL parameters.
    pub null_params: bool,
}

impl Spec {
    /// A CA valid from an hour ago for a day.
    pub fn ca(cn: &str) -> Self {
        Self {
            cn: cn.into(),
            dns: vec![],
            ca: true,
            path_len: None,
            eku: None,
            not_before: SystemTime::now() - Duration::from_secs(3600),
            not_after: SystemTime::now() + Duration::from_secs(86_400),
            null_params: false,
        }
    }

    /// A leaf for `dns` with `eku`.
    pub fn leaf(cn: &str, dns: &[&str], eku: ObjectIdentifier) -> Self {
        Self {
            dns: dns.iter().map(|d| d.to_string()).collect(),
            ca: false,
            eku: Some(eku),
            ..Self::ca(cn)
        }
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn time(t: SystemTime) -> Time {
    Time::UtcTime(UtcTime::from_unix_duration(t.duration_since(UNIX_EPOCH).unwrap()).unwrap())
}

fn ext(oid: &str, critical: bool, value: impl Encode) -> Extension {
    Extension {
        extn_id: ObjectIdentifier::new_unwrap(oid),
        critical,
        extn_value: OctetString::new(value.to_der().unwrap()).unwrap(),
    }
}

/// An SM2-with-SM3 signature of `msg` under distinguishing id `id`, DER.
pub fn sign_der(key: &SecretKey, id: &str, msg: &[u8]) -> Vec<u8> {
    let signer = sm2::dsa::SigningKey::new(id, key).unwrap();
    let sig: sm2::dsa::Signature = signer.sign(msg);
    let (r, s) = (sig.r_bytes(), sig.s_bytes());
    [UintRef::new(&r).unwrap(), UintRef::new(&s).unwrap()]
        .to_der()
        .unwrap()
}

/// Issues a certificate for `spec`, signed by `issuer` (self-signed when `None`).
pub fn issue(spec: &Spec, issuer: Option<&Issued>) -> Issued {
    let key = SecretKey::random(&mut OsRng);
    issue_with_key(spec, issuer, key)
}

/// As [`issue`], for a given key.
pub fn issue_with_key(spec: &Spec, issuer: Option<&Issued>, key: SecretKey) -> Issued {
    let subject = Name::from_str(&format!("CN={},O=proxy-tls test", spec.cn)).unwrap();
    let spki_der = key.public_key().to_public_key_der().unwrap();
    let spki = SubjectPublicKeyInfoOwned::from_der(spki_der.as_bytes()).unwrap();
    let alg = AlgorithmIdentifierOwned {
        oid: SM2_WITH_SM3,
        parameters: spec
            .null_params
            .then(|| Any::new(Tag::Null, Vec::<u8>::new()).unwrap()),
    };
    let mut extensions = vec![];
    if spec.ca {
        extensions.push(ext(
            "2.5.29.19",
            true,
            BasicConstraints {
                ca: true,
                path_len_constraint: spec.path_len,
            },
        ));
        extensions.push(ext(
            "2.5.29.15",
            true,
            KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign),
        ));
    } else {
        extensions.push(ext(
            "2.5.29.15",
            true,
            KeyUsage(KeyUsages::DigitalSignature.into()),
        ));
    }
    if let Some(eku) = spec.eku {
        extensions.push(ext("2.5.29.37", false, ExtendedKeyUsage(vec![eku])));
    }
    if !spec.dns.is_empty() {
        let names = spec
            .dns
            .iter()
            .map(|d| GeneralName::DnsName(Ia5String::new(d).unwrap()))
            .collect();
        extensions.push(ext("2.5.29.17", false, SubjectAltName(names)));
    }
    let mut serial = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut OsRng, &mut serial);
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&serial).unwrap(),
        signature: alg.clone(),
        issuer: issuer.map_or_else(|| subject.clone(), |i| i.subject.clone()),
        validity: Validity {
            not_before: time(spec.not_before),
            not_after: time(spec.not_after),
        },
        subject: subject.clone(),
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    let signer_key = issuer.map_or(&key, |i| &i.key);
    let sig_der = sign_der(signer_key, CERT_ID, &tbs.to_der().unwrap());
    let cert = Certificate {
        tbs_certificate: tbs,
        signature_algorithm: alg,
        signature: BitString::from_bytes(&sig_der).unwrap(),
    };
    Issued {
        der: CertificateDer::from(cert.to_der().unwrap()),
        key,
        subject,
    }
}
