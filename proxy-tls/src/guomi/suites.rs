//! SM3 hash and HMAC, and the two RFC 8998 TLS 1.3 cipher suites (SM4-GCM,
//! SM4-CCM) with their record protection.

use aes_gcm::aead::consts::{U12, U16};
use aes_gcm::aead::{AeadInPlace, Buffer, KeyInit};
use aes_gcm::AesGcm;
use ccm::Ccm;
use hmac::{Hmac, Mac};
use rustls::crypto::cipher::{
    make_tls13_aad, AeadKey, BorrowedPayload, InboundOpaqueMessage, InboundPlainMessage, Iv,
    MessageDecrypter, MessageEncrypter, Nonce, OutboundOpaqueMessage, OutboundPlainMessage,
    PrefixedPayload, Tls13AeadAlgorithm, UnsupportedOperationError,
};
use rustls::crypto::hash::{self, HashAlgorithm};
use rustls::crypto::tls13::HkdfUsingHmac;
use rustls::crypto::{hmac as rhmac, CipherSuiteCommon};
use rustls::{
    ConnectionTrafficSecrets, ContentType, Error, ProtocolVersion, SupportedCipherSuite,
    Tls13CipherSuite,
};
use sm3::{Digest, Sm3};
use sm4::Sm4;

use super::{SM4_CCM_SM3, SM4_GCM_SM3};

/// SM3 has no TLS `HashAlgorithm` code point; this private value only has to
/// differ from the SHA-2 ones (rustls compares it for resumption).
const SM3_HASH_ALGORITHM: HashAlgorithm = HashAlgorithm::Unknown(0x07);
const TAG_LEN: usize = 16;
const SM4_KEY_LEN: usize = 16;

/// SM3 digest of `data` (GB/T 32905).
pub fn sm3_hash(data: &[u8]) -> [u8; 32] {
    Sm3::digest(data).into()
}

// === impl Sm3Hash ===

/// SM3 as a rustls transcript hash.
#[derive(Debug)]
pub(crate) struct Sm3Hash;

pub(crate) static SM3: Sm3Hash = Sm3Hash;

impl hash::Hash for Sm3Hash {
    fn start(&self) -> Box<dyn hash::Context> {
        Box::new(Sm3Context(Sm3::new()))
    }

    fn hash(&self, data: &[u8]) -> hash::Output {
        hash::Output::new(&sm3_hash(data))
    }

    fn output_len(&self) -> usize {
        32
    }

    fn algorithm(&self) -> HashAlgorithm {
        SM3_HASH_ALGORITHM
    }
}

struct Sm3Context(Sm3);

impl hash::Context for Sm3Context {
    fn fork_finish(&self) -> hash::Output {
        hash::Output::new(&self.0.clone().finalize())
    }

    fn fork(&self) -> Box<dyn hash::Context> {
        Box::new(Sm3Context(self.0.clone()))
    }

    fn finish(self: Box<Self>) -> hash::Output {
        hash::Output::new(&self.0.finalize())
    }

    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
}

// === impl HmacSm3 ===

/// HMAC-SM3, the PRF under HKDF for both Guomi suites.
#[derive(Debug)]
pub(crate) struct HmacSm3;

pub(crate) static HMAC_SM3: HmacSm3 = HmacSm3;
static HKDF_SM3: HkdfUsingHmac<'static> = HkdfUsingHmac(&HMAC_SM3);

impl rhmac::Hmac for HmacSm3 {
    fn with_key(&self, key: &[u8]) -> Box<dyn rhmac::Key> {
        // HMAC accepts keys of any length, so this cannot fail.
        let mac = <Hmac<Sm3> as Mac>::new_from_slice(key)
            .unwrap_or_else(|_| <Hmac<Sm3> as KeyInit>::new(&Default::default()));
        Box::new(HmacSm3Key(mac))
    }

    fn hash_output_len(&self) -> usize {
        32
    }
}

struct HmacSm3Key(Hmac<Sm3>);

impl rhmac::Key for HmacSm3Key {
    fn sign_concat(&self, first: &[u8], middle: &[&[u8]], last: &[u8]) -> rhmac::Tag {
        let mut mac = self.0.clone();
        mac.update(first);
        for part in middle {
            mac.update(part);
        }
        mac.update(last);
        rhmac::Tag::new(&mac.finalize().into_bytes())
    }

    fn tag_len(&self) -> usize {
        32
    }
}

// === cipher suites ===

/// `TLS_SM4_GCM_SM3` (0x00C6).
pub static TLS13_SM4_GCM_SM3: SupportedCipherSuite =
    SupportedCipherSuite::Tls13(&Tls13CipherSuite {
        common: CipherSuiteCommon {
            suite: SM4_GCM_SM3,
            hash_provider: &SM3,
            // The same bound as AES-128-GCM (RFC 8446 section 5.5): a 128-bit block cipher in GCM.
            confidentiality_limit: 1 << 24,
        },
        hkdf_provider: &HKDF_SM3,
        aead_alg: &Sm4Aead(Mode::Gcm),
        quic: None,
    });

/// `TLS_SM4_CCM_SM3` (0x00C7).
pub static TLS13_SM4_CCM_SM3: SupportedCipherSuite =
    SupportedCipherSuite::Tls13(&Tls13CipherSuite {
        common: CipherSuiteCommon {
            suite: SM4_CCM_SM3,
            hash_provider: &SM3,
            // The bound RFC 9147 gives for AES-128-CCM.
            confidentiality_limit: 1 << 23,
        },
        hkdf_provider: &HKDF_SM3,
        aead_alg: &Sm4Aead(Mode::Ccm),
        quic: None,
    });

#[derive(Clone, Copy, Debug)]
enum Mode {
    Gcm,
    Ccm,
}

/// SM4 with GCM or CCM (16-byte tag, 12-byte nonce), RFC 8998 section 3.3.
#[derive(Debug)]
struct Sm4Aead(Mode);

type Sm4Gcm = AesGcm<Sm4, U12>;
type Sm4Ccm = Ccm<Sm4, U16, U12>;

/// One keyed SM4 AEAD. Also used by the known-answer tests.
pub(crate) enum Sm4Cipher {
    Gcm(Box<Sm4Gcm>),
    Ccm(Box<Sm4Ccm>),
}

impl Sm4Cipher {
    fn new(mode: Mode, key: &[u8]) -> Self {
        // rustls hands over exactly `key_len()` (16) bytes; copying into a
        // fixed array keeps any other length from panicking.
        let mut fixed = [0u8; SM4_KEY_LEN];
        let n = key.len().min(SM4_KEY_LEN);
        fixed[..n].copy_from_slice(&key[..n]);
        let key = aes_gcm::Key::<Sm4Gcm>::from_slice(&fixed);
        match mode {
            Mode::Gcm => Self::Gcm(Box::new(Sm4Gcm::new(key))),
            Mode::Ccm => Self::Ccm(Box::new(Sm4Ccm::new(key))),
        }
    }

    /// SM4-GCM keyed with `key` (16 bytes).
    #[cfg(test)]
    pub(crate) fn gcm(key: &[u8; 16]) -> Self {
        Self::new(Mode::Gcm, key)
    }

    /// SM4-CCM keyed with `key` (16 bytes).
    #[cfg(test)]
    pub(crate) fn ccm(key: &[u8; 16]) -> Self {
        Self::new(Mode::Ccm, key)
    }

    /// Encrypts `buf` in place and appends the 16-byte tag.
    pub(crate) fn seal(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut dyn Buffer,
    ) -> Result<(), aes_gcm::aead::Error> {
        let nonce = aes_gcm::Nonce::<U12>::from_slice(nonce);
        match self {
            Self::Gcm(c) => c.encrypt_in_place(nonce, aad, buf),
            Self::Ccm(c) => c.encrypt_in_place(nonce, aad, buf),
        }
    }

    /// Checks and strips the tag, decrypting `buf` in place.
    pub(crate) fn open(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut dyn Buffer,
    ) -> Result<(), aes_gcm::aead::Error> {
        let nonce = aes_gcm::Nonce::<U12>::from_slice(nonce);
        match self {
            Self::Gcm(c) => c.decrypt_in_place(nonce, aad, buf),
            Self::Ccm(c) => c.decrypt_in_place(nonce, aad, buf),
        }
    }
}

impl Tls13AeadAlgorithm for Sm4Aead {
    fn encrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageEncrypter> {
        Box::new(Sm4Tls13 {
            cipher: Sm4Cipher::new(self.0, key.as_ref()),
            iv,
        })
    }

    fn decrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageDecrypter> {
        Box::new(Sm4Tls13 {
            cipher: Sm4Cipher::new(self.0, key.as_ref()),
            iv,
        })
    }

    fn key_len(&self) -> usize {
        SM4_KEY_LEN
    }

    fn extract_keys(
        &self,
        _key: AeadKey,
        _iv: Iv,
    ) -> Result<ConnectionTrafficSecrets, UnsupportedOperationError> {
        // ConnectionTrafficSecrets has no SM4 variant (kTLS export is not offered).
        Err(UnsupportedOperationError)
    }
}

/// Record protection for one direction of a TLS 1.3 connection.
struct Sm4Tls13 {
    cipher: Sm4Cipher,
    iv: Iv,
}

impl MessageEncrypter for Sm4Tls13 {
    fn encrypt(
        &mut self,
        msg: OutboundPlainMessage<'_>,
        seq: u64,
    ) -> Result<OutboundOpaqueMessage, Error> {
        let total_len = self.encrypted_payload_len(msg.payload.len());
        let mut payload = PrefixedPayload::with_capacity(total_len);
        payload.extend_from_chunks(&msg.payload);
        payload.extend_from_slice(&msg.typ.to_array());
        let nonce = Nonce::new(&self.iv, seq).0;
        let aad = make_tls13_aad(total_len);
        self.cipher
            .seal(&nonce, &aad, &mut EncryptBuffer(&mut payload))
            .map_err(|_| Error::EncryptError)?;
        Ok(OutboundOpaqueMessage::new(
            ContentType::ApplicationData,
            ProtocolVersion::TLSv1_2,
            payload,
        ))
    }

    fn encrypted_payload_len(&self, payload_len: usize) -> usize {
        payload_len + 1 + TAG_LEN
    }
}

impl MessageDecrypter for Sm4Tls13 {
    fn decrypt<'a>(
        &mut self,
        mut msg: InboundOpaqueMessage<'a>,
        seq: u64,
    ) -> Result<InboundPlainMessage<'a>, Error> {
        if msg.payload.len() < TAG_LEN {
            return Err(Error::DecryptError);
        }
        let nonce = Nonce::new(&self.iv, seq).0;
        let aad = make_tls13_aad(msg.payload.len());
        self.cipher
            .open(&nonce, &aad, &mut DecryptBuffer(&mut msg.payload))
            .map_err(|_| Error::DecryptError)?;
        msg.into_tls13_unpadded_message()
    }
}

/// Lets the AEAD append its tag to rustls' outgoing record buffer.
struct EncryptBuffer<'a>(&'a mut PrefixedPayload);

impl AsRef<[u8]> for EncryptBuffer<'_> {
    fn as_ref(&self) -> &[u8] {
        self.0.as_ref()
    }
}

impl AsMut<[u8]> for EncryptBuffer<'_> {
    fn as_mut(&mut self) -> &mut [u8] {
        self.0.as_mut()
    }
}

impl Buffer for EncryptBuffer<'_> {
    fn extend_from_slice(&mut self, other: &[u8]) -> aes_gcm::aead::Result<()> {
        self.0.extend_from_slice(other);
        Ok(())
    }

    fn truncate(&mut self, len: usize) {
        self.0.truncate(len)
    }
}

/// Lets the AEAD strip its tag from rustls' incoming record buffer.
struct DecryptBuffer<'a, 'p>(&'a mut BorrowedPayload<'p>);

impl AsRef<[u8]> for DecryptBuffer<'_, '_> {
    fn as_ref(&self) -> &[u8] {
        self.0
    }
}

impl AsMut<[u8]> for DecryptBuffer<'_, '_> {
    fn as_mut(&mut self) -> &mut [u8] {
        self.0
    }
}

impl Buffer for DecryptBuffer<'_, '_> {
    fn extend_from_slice(&mut self, _: &[u8]) -> aes_gcm::aead::Result<()> {
        // Decryption only shrinks the buffer.
        Err(aes_gcm::aead::Error)
    }

    fn truncate(&mut self, len: usize) {
        self.0.truncate(len)
    }
}
