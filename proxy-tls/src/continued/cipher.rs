//! One direction's TLS 1.3 record protection (RFC 8446 section 5.2 and 5.3): the AEAD
//! key, the static IV and the record sequence number, on `ring::aead`.

use ring::aead::{
    Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM, CHACHA20_POLY1305, NONCE_LEN,
};

use super::secrets::{CipherSuite, DirectionSecrets};

/// The AEAD tag length of every TLS 1.3 suite this layer continues.
pub(crate) const TAG_LEN: usize = 16;

/// Records one AES-GCM key may protect (RFC 8446 5.5 allows 2^24.5 full-size
/// records; rustls uses 2^24 too). A peer would update its keys before; this layer
/// cannot (no traffic secret), so the connection ends there instead.
const AES_GCM_RECORD_LIMIT: u64 = 1 << 24;

/// Why a record could not be protected or unprotected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CipherError {
    /// The tag did not verify (`bad_record_mac`).
    BadRecordMac,
    /// The sequence number would wrap (RFC 8446 5.3: the connection must end), or
    /// the key protected as many records as it may (5.5).
    SequenceExhausted,
    /// A record to seal is longer than a record may be (a caller's bug, never
    /// reached: the writer cuts plaintext at 2^14 bytes).
    RecordTooLong,
}

/// One direction's key, IV and next sequence number.
pub(crate) struct DirectionCipher {
    key: LessSafeKey,
    iv: [u8; NONCE_LEN],
    seq: u64,
    /// The sequence number this key may not reach.
    limit: u64,
}

impl std::fmt::Debug for DirectionCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectionCipher")
            .field("algorithm", self.key.algorithm())
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl DirectionCipher {
    /// Builds the cipher from extracted secrets; `None` when the key length does not
    /// fit the suite (only reachable from a corrupted hand-over message).
    pub(crate) fn new(suite: CipherSuite, secrets: &DirectionSecrets) -> Option<Self> {
        let (algorithm, limit) = match suite {
            CipherSuite::Aes128Gcm => (&AES_128_GCM, AES_GCM_RECORD_LIMIT),
            CipherSuite::Aes256Gcm => (&AES_256_GCM, AES_GCM_RECORD_LIMIT),
            CipherSuite::Chacha20Poly1305 => (&CHACHA20_POLY1305, u64::MAX),
        };
        let key = UnboundKey::new(algorithm, secrets.key()).ok()?;
        Some(Self {
            key: LessSafeKey::new(key),
            iv: *secrets.iv(),
            seq: secrets.seq(),
            limit,
        })
    }

    /// The sequence number the next record uses.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// The per-record nonce: the IV XOR the sequence number, left-padded (RFC 8446 5.3).
    fn nonce(&mut self) -> Result<Nonce, CipherError> {
        let seq = self.seq;
        if seq >= self.limit {
            return Err(CipherError::SequenceExhausted);
        }
        self.seq = seq.checked_add(1).ok_or(CipherError::SequenceExhausted)?;
        let mut nonce = self.iv;
        for (n, s) in nonce[NONCE_LEN - 8..].iter_mut().zip(seq.to_be_bytes()) {
            *n ^= s;
        }
        Ok(Nonce::assume_unique_for_key(nonce))
    }

    /// Decrypts `payload` (ciphertext and tag) in place with `header` as the additional
    /// data; returns the length of the plaintext at the front of `payload`.
    pub(crate) fn open(
        &mut self,
        header: &[u8; 5],
        payload: &mut [u8],
    ) -> Result<usize, CipherError> {
        let nonce = self.nonce()?;
        self.key
            .open_in_place(nonce, Aad::from(header), payload)
            .map(|plain| plain.len())
            .map_err(|_| CipherError::BadRecordMac)
    }

    /// Encrypts `record[5..]` (the TLSInnerPlaintext) in place, appends the tag and
    /// writes the record header into `record[..5]`.
    pub(crate) fn seal(&mut self, record: &mut Vec<u8>, start: usize) -> Result<(), CipherError> {
        let inner_len = record.len() - start - 5;
        let len = u16::try_from(inner_len + TAG_LEN).map_err(|_| CipherError::RecordTooLong)?;
        let header = super::record::header(len);
        record[start..start + 5].copy_from_slice(&header);
        let nonce = self.nonce()?;
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(&header), &mut record[start + 5..])
            .map_err(|_| CipherError::RecordTooLong)?;
        record.extend_from_slice(tag.as_ref());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::continued::ContinuedSecrets;

    fn cipher(code: u8, seq: u64) -> DirectionCipher {
        let key_len = if code == 1 { 16 } else { 32 };
        let mut encoded = vec![1u8, code];
        for _ in 0..2 {
            encoded.extend_from_slice(&seq.to_be_bytes());
            encoded.extend(std::iter::repeat_n(7u8, key_len + 12));
        }
        let secrets = ContinuedSecrets::decode(&encoded).expect("secrets");
        DirectionCipher::new(secrets.suite(), secrets.tx()).expect("cipher")
    }

    #[test]
    fn aes_gcm_keys_stop_at_their_record_limit_and_sequence_numbers_never_wrap() {
        let mut record = vec![0u8; 5];
        record.extend_from_slice(b"x\x17");
        let mut aes = cipher(2, AES_GCM_RECORD_LIMIT - 1);
        assert_eq!(aes.seal(&mut record.clone(), 0), Ok(()));
        assert_eq!(
            aes.seal(&mut record.clone(), 0),
            Err(CipherError::SequenceExhausted)
        );
        let mut chacha = cipher(3, AES_GCM_RECORD_LIMIT);
        assert_eq!(chacha.seal(&mut record.clone(), 0), Ok(()));
        let mut last = cipher(3, u64::MAX);
        assert_eq!(
            last.seal(&mut record.clone(), 0),
            Err(CipherError::SequenceExhausted)
        );
    }
}
