//! SM2 private keys: the `sm2sig_sm3` signer for TLS 1.3 CertificateVerify
//! (distinguishing id `TLSv1.3+GM+Cipher+Suite`), key loading, and the DER
//! form of SM2 signatures.

use std::fmt;
use std::sync::Arc;

use rand_core::OsRng;
use rustls::crypto::KeyProvider;
use rustls::pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer};
use rustls::sign::{Signer, SigningKey};
use rustls::{Error, SignatureAlgorithm, SignatureScheme};
use sm2::dsa::signature::RandomizedSigner;
use sm2::dsa::Signature;
use sm2::pkcs8::{DecodePrivateKey, EncodePublicKey};
use sm2::SecretKey;
use x509_cert::der::asn1::UintRef;
use x509_cert::der::{Decode, Encode};

use super::error::GuomiError;
use super::{SM2SIG_SM3, TLS13_SM2_ID};

/// SM2 has no TLS 1.2 `SignatureAlgorithm`. rustls only compares this value
/// with the algorithms TLS 1.2 suites list, and an `Unknown` variant equals
/// none of them, so no TLS 1.2 suite is ever paired with an SM2 key.
const SM2_SIGNATURE_ALGORITHM: SignatureAlgorithm = SignatureAlgorithm::Unknown(0x08);

/// An SM2 private key that signs TLS 1.3 handshakes with `sm2sig_sm3`.
pub struct Sm2SigningKey {
    key: Arc<sm2::dsa::SigningKey>,
    spki: Vec<u8>,
}

impl fmt::Debug for Sm2SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sm2SigningKey").finish_non_exhaustive()
    }
}

impl Sm2SigningKey {
    /// Wraps an SM2 secret key.
    ///
    /// # Errors
    /// [`GuomiError::Key`] if the public key cannot be encoded.
    pub fn new(secret: &SecretKey) -> Result<Self, GuomiError> {
        let key = sm2::dsa::SigningKey::new(TLS13_SM2_ID, secret)
            .map_err(|_| GuomiError::Key("the SM2 secret key is not usable".into()))?;
        let spki = secret
            .public_key()
            .to_public_key_der()
            .map_err(|e| GuomiError::Key(format!("cannot encode the SM2 public key: {e}")))?
            .into_vec();
        Ok(Self {
            key: Arc::new(key),
            spki,
        })
    }

    /// The public point, to match the key against a certificate.
    pub(crate) fn public_point(&self) -> sm2::AffinePoint {
        *self.key.verifying_key().as_affine()
    }

    /// The public key as DER SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> &[u8] {
        &self.spki
    }
}

impl SigningKey for Sm2SigningKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered
            .contains(&SM2SIG_SM3)
            .then(|| Box::new(Sm2Signer(self.key.clone())) as Box<dyn Signer>)
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(SubjectPublicKeyInfoDer::from(self.spki.as_slice()))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SM2_SIGNATURE_ALGORITHM
    }
}

/// Signs one CertificateVerify.
struct Sm2Signer(Arc<sm2::dsa::SigningKey>);

impl fmt::Debug for Sm2Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sm2Signer")
    }
}

impl Signer for Sm2Signer {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        // Hedged: RFC 6979 nonce mixed with fresh randomness.
        let sig: Signature = self
            .0
            .try_sign_with_rng(&mut OsRng, message)
            .map_err(|_| Error::General("SM2 signing failed".into()))?;
        signature_to_der(&sig).ok_or_else(|| Error::General("SM2 signature encoding".into()))
    }

    fn scheme(&self) -> SignatureScheme {
        SM2SIG_SM3
    }
}

/// Loads an SM2 private key from PKCS#8 (the EC form, `id-ecPublicKey` with
/// the SM2 curve, or an `1.2.156.10197.1.301` algorithm) or SEC1 DER.
///
/// # Errors
/// [`GuomiError::Key`] if the key is not an SM2 key in one of those forms.
pub fn load_sm2_key(der: &PrivateKeyDer<'_>) -> Result<Sm2SigningKey, GuomiError> {
    let secret = match der {
        PrivateKeyDer::Pkcs8(p) => secret_from_pkcs8(p.secret_pkcs8_der())?,
        PrivateKeyDer::Sec1(s) => SecretKey::from_sec1_der(s.secret_sec1_der())
            .map_err(|e| GuomiError::Key(format!("not an SM2 SEC1 key: {e}")))?,
        _ => return Err(GuomiError::Key("an RSA key is not an SM2 key".into())),
    };
    Sm2SigningKey::new(&secret)
}

fn secret_from_pkcs8(der: &[u8]) -> Result<SecretKey, GuomiError> {
    if let Ok(key) = SecretKey::from_pkcs8_der(der) {
        return Ok(key);
    }
    // Some tools label the key with the SM2 OID itself rather than
    // id-ecPublicKey + SM2 curve; the inner SEC1 key is the same.
    let info = sm2::pkcs8::PrivateKeyInfo::try_from(der)
        .map_err(|e| GuomiError::Key(format!("not a PKCS#8 key: {e}")))?;
    if info.algorithm.oid != super::chain::OID_SM2_CURVE {
        return Err(GuomiError::Key(format!(
            "PKCS#8 key algorithm {} is not SM2",
            info.algorithm.oid
        )));
    }
    SecretKey::from_sec1_der(info.private_key)
        .map_err(|e| GuomiError::Key(format!("PKCS#8 SM2 key body: {e}")))
}

/// A rustls [`KeyProvider`] that loads SM2 keys only.
#[derive(Debug)]
pub(crate) struct Sm2KeyProvider;

impl KeyProvider for Sm2KeyProvider {
    fn load_private_key(
        &self,
        key_der: PrivateKeyDer<'static>,
    ) -> Result<Arc<dyn SigningKey>, Error> {
        load_sm2_key(&key_der)
            .map(|k| Arc::new(k) as Arc<dyn SigningKey>)
            .map_err(|e| Error::General(e.to_string()))
    }
}

/// `SEQUENCE { INTEGER r, INTEGER s }` (GM/T 0009 SM2Signature).
pub(crate) fn signature_to_der(sig: &Signature) -> Option<Vec<u8>> {
    let r = sig.r_bytes();
    let s = sig.s_bytes();
    let seq = [UintRef::new(&r).ok()?, UintRef::new(&s).ok()?];
    seq.to_der().ok()
}

/// Parses a DER SM2 signature; `None` unless both integers are in `1..n`.
pub(crate) fn signature_from_der(der: &[u8]) -> Option<Signature> {
    let [r, s] = <[UintRef<'_>; 2]>::from_der(der).ok()?;
    Signature::from_scalars(pad32(r.as_bytes())?, pad32(s.as_bytes())?).ok()
}

fn pad32(bytes: &[u8]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    let start = 32usize.checked_sub(bytes.len())?;
    out[start..].copy_from_slice(bytes);
    Some(out)
}
