//! Throwaway certificates made at start, for demos and first runs: an ECDSA P-256
//! certificate (international suites) and, with the `guomi` feature, an SM2 one (a
//! leaf under its own SM2 root, signed SM2-with-SM3 with the identifier
//! `1234567812345678`). Nothing trusts them: clients pass `-k` or the returned
//! `issuer_pem`. Needs the `self-signed` cargo feature.
//!
//! ```
//! let dir = std::env::temp_dir().join(format!("self-signed-doc-{}", std::process::id()));
//! let ecdsa = proxy_tls::self_signed::international(&["localhost"])?;
//! let (cert, key) = ecdsa.write(&dir, "edge")?;
//! assert!(std::fs::read_to_string(&cert)?.starts_with("-----BEGIN CERTIFICATE-----"));
//! # let _ = key;
//! # #[cfg(feature = "guomi")]
//! let sm2 = proxy_tls::self_signed::guomi(&["localhost"])?;
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::{
    io,
    path::{Path, PathBuf},
};

/// A certificate and its key, PEM.
#[derive(Clone)]
pub struct SelfSigned {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The certificate a client trusts to verify `cert_pem`: `cert_pem` itself for a
    /// self-signed one, the SM2 root for a Guomi one.
    pub issuer_pem: String,
}

impl std::fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfSigned").finish_non_exhaustive()
    }
}

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SelfSignedError {
    /// rcgen refused the names or failed to sign.
    #[error("cannot make an ECDSA certificate")]
    Ecdsa(#[source] rcgen::Error),
    /// An SM2 encoding or signing step failed.
    #[error("cannot make an SM2 certificate: {0}")]
    Sm2(String),
}

impl SelfSigned {
    /// Writes `STEM.pem`, `STEM.key` and `STEM-ca.pem` into `dir` (created if
    /// missing; the key readable by its owner only) and returns the certificate and
    /// key paths.
    ///
    /// # Errors
    /// When the directory or a file cannot be written.
    pub fn write(&self, dir: &Path, stem: &str) -> io::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir)?;
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}.key"));
        std::fs::write(&cert, &self.cert_pem)?;
        std::fs::write(dir.join(format!("{stem}-ca.pem")), &self.issuer_pem)?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        io::Write::write_all(&mut options.open(&key)?, self.key_pem.as_bytes())?;
        Ok((cert, key))
    }
}

/// A self-signed ECDSA P-256 certificate for `names` (DNS names or IP addresses),
/// valid from now for a year (rcgen's defaults).
///
/// # Errors
/// When a name is not a valid DNS name or address.
pub fn international(names: &[&str]) -> Result<SelfSigned, SelfSignedError> {
    let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let made = rcgen::generate_simple_self_signed(names).map_err(SelfSignedError::Ecdsa)?;
    let cert_pem = made.cert.pem();
    Ok(SelfSigned {
        issuer_pem: cert_pem.clone(),
        cert_pem,
        key_pem: made.key_pair.serialize_pem(),
    })
}

/// An SM2 server certificate for the DNS `names`, valid from an hour ago for 825 days,
/// under a throwaway SM2 root (`issuer_pem`).
///
/// # Errors
/// When a name is not a valid IA5 string, or an encoding step fails.
#[cfg(feature = "guomi")]
pub fn guomi(names: &[&str]) -> Result<SelfSigned, SelfSignedError> {
    sm2_pki::issue(names).map_err(|e| SelfSignedError::Sm2(e.to_string()))
}

#[cfg(feature = "guomi")]
mod sm2_pki {
    use std::{
        str::FromStr,
        time::{Duration, SystemTime},
    };

    use rand_core::{OsRng, RngCore};
    use sm2::{
        dsa::signature::Signer,
        pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding},
        SecretKey,
    };
    use x509_cert::{
        der::{
            asn1::{BitString, Ia5String, ObjectIdentifier, OctetString, UintRef},
            Decode, Encode, EncodePem,
        },
        ext::{
            pkix::{
                name::GeneralName, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
                SubjectAltName,
            },
            Extension,
        },
        name::Name,
        serial_number::SerialNumber,
        spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned},
        time::Validity,
        Certificate, TbsCertificate, Version,
    };

    use super::SelfSigned;

    type Error = Box<dyn std::error::Error + Send + Sync>;

    const SM2_WITH_SM3: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.501");
    const SERVER_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
    const DAY: u64 = 86_400;

    pub(super) fn issue(names: &[&str]) -> Result<SelfSigned, Error> {
        let ca_key = SecretKey::random(&mut OsRng);
        let ca_name = Name::from_str("CN=Throwaway SM2 Root,O=proxy-tls")?;
        let ca_exts = vec![
            ext(
                "2.5.29.19",
                true,
                BasicConstraints {
                    ca: true,
                    path_len_constraint: Some(0),
                },
            )?,
            ext(
                "2.5.29.15",
                true,
                KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign),
            )?,
        ];
        let ca = sign(&ca_name, &ca_name, &ca_key, &ca_key, ca_exts, 3650)?;

        let key = SecretKey::random(&mut OsRng);
        let cn = names.first().copied().unwrap_or("localhost");
        let subject = Name::from_str(&format!("CN={cn},O=proxy-tls"))?;
        let dns = names
            .iter()
            .map(|n| Ok(GeneralName::DnsName(Ia5String::new(n)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        let exts = vec![
            ext(
                "2.5.29.19",
                true,
                BasicConstraints {
                    ca: false,
                    path_len_constraint: None,
                },
            )?,
            ext(
                "2.5.29.15",
                true,
                KeyUsage(KeyUsages::DigitalSignature.into()),
            )?,
            ext("2.5.29.37", false, ExtendedKeyUsage(vec![SERVER_AUTH]))?,
            ext("2.5.29.17", false, SubjectAltName(dns))?,
        ];
        let leaf = sign(&subject, &ca_name, &key, &ca_key, exts, 825)?;
        Ok(SelfSigned {
            cert_pem: leaf.to_pem(LineEnding::LF)?,
            key_pem: key.to_pkcs8_pem(LineEnding::LF)?.to_string(),
            issuer_pem: ca.to_pem(LineEnding::LF)?,
        })
    }

    fn ext(oid: &str, critical: bool, value: impl Encode) -> Result<Extension, Error> {
        Ok(Extension {
            extn_id: ObjectIdentifier::new(oid)?,
            critical,
            extn_value: OctetString::new(value.to_der()?)?,
        })
    }

    fn sign(
        subject: &Name,
        issuer: &Name,
        key: &SecretKey,
        issuer_key: &SecretKey,
        extensions: Vec<Extension>,
        days: u64,
    ) -> Result<Certificate, Error> {
        let spki_der = key.public_key().to_public_key_der()?;
        let alg = AlgorithmIdentifierOwned {
            oid: SM2_WITH_SM3,
            parameters: None,
        };
        let mut serial = [0u8; 16];
        OsRng.fill_bytes(&mut serial);
        serial[0] = (serial[0] & 0x7f) | 0x01;
        let now = SystemTime::now();
        let tbs = TbsCertificate {
            version: Version::V3,
            serial_number: SerialNumber::new(&serial)?,
            signature: alg.clone(),
            issuer: issuer.clone(),
            validity: Validity {
                not_before: (now - Duration::from_secs(3600)).try_into()?,
                not_after: (now + Duration::from_secs(days * DAY)).try_into()?,
            },
            subject: subject.clone(),
            subject_public_key_info: SubjectPublicKeyInfoOwned::from_der(spki_der.as_bytes())?,
            issuer_unique_id: None,
            subject_unique_id: None,
            extensions: Some(extensions),
        };
        let signer = sm2::dsa::SigningKey::new("1234567812345678", issuer_key)?;
        let sig: sm2::dsa::Signature = signer.sign(&tbs.to_der()?);
        let (r, s) = (sig.r_bytes(), sig.s_bytes());
        let sig_der = [UintRef::new(&r)?, UintRef::new(&s)?].to_der()?;
        Ok(Certificate {
            tbs_certificate: tbs,
            signature_algorithm: alg,
            signature: BitString::from_bytes(&sig_der)?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use rustls::pki_types::ServerName;

    /// Runs a handshake between two in-memory rustls connections.
    fn handshake(client: &mut rustls::ClientConnection, server: &mut rustls::ServerConnection) {
        for _ in 0..10 {
            let mut buf = Vec::new();
            client.write_tls(&mut buf).unwrap();
            server.read_tls(&mut buf.as_slice()).unwrap();
            server.process_new_packets().unwrap();
            let mut buf = Vec::new();
            server.write_tls(&mut buf).unwrap();
            client.read_tls(&mut buf.as_slice()).unwrap();
            client.process_new_packets().unwrap();
            if !client.is_handshaking() && !server.is_handshaking() {
                return;
            }
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn international_certificate_is_its_own_issuer() {
        let made = super::international(&["localhost", "127.0.0.1"]).unwrap();
        assert_eq!(made.cert_pem, made.issuer_pem);
        assert!(made.key_pem.contains("PRIVATE KEY"));
    }

    /// A Guomi client that trusts `issuer_pem` completes TLS_SM4_GCM_SM3 against a
    /// server on `cert_pem` and `key_pem`.
    #[cfg(feature = "guomi")]
    #[test]
    fn guomi_certificate_verifies_against_its_root() {
        use crate::guomi::{GuomiClientBuilder, GuomiServerBuilder, Sm2RootStore};

        let made = super::guomi(&["localhost"]).unwrap();
        let server =
            GuomiServerBuilder::from_pem(made.cert_pem.as_bytes(), made.key_pem.as_bytes())
                .unwrap()
                .build()
                .unwrap();
        let roots = Sm2RootStore::from_pem(made.issuer_pem.as_bytes(), "issuer.pem").unwrap();
        let client = GuomiClientBuilder::new(Arc::new(roots)).build().unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut c = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
        let mut s = rustls::ServerConnection::new(Arc::new(server)).unwrap();
        handshake(&mut c, &mut s);
        let suite = c.negotiated_cipher_suite().unwrap().suite();
        assert_eq!(suite, crate::guomi::TLS13_SM4_GCM_SM3.suite());
    }
}
