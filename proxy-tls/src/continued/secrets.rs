//! The state a TLS 1.3 server session is continued from: the negotiated suite and,
//! per direction, the AEAD key, the static IV and the next record sequence number, as
//! rustls's `dangerous_extract_secrets` gives them, with a byte encoding for the
//! hand-over. Key bytes are zeroed when dropped.

use rustls::{ConnectionTrafficSecrets, ExtractedSecrets};
use zeroize::Zeroizing;

/// Length of the TLS 1.3 static IV (and of every suite's nonce).
const IV_LEN: usize = 12;
/// The encoding's version byte (see [`ContinuedSecrets::encode`]).
const ENCODING_VERSION: u8 = 1;

/// The TLS 1.3 AEAD suites a session can be continued with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherSuite {
    /// TLS_AES_128_GCM_SHA256.
    Aes128Gcm,
    /// TLS_AES_256_GCM_SHA384.
    Aes256Gcm,
    /// TLS_CHACHA20_POLY1305_SHA256.
    Chacha20Poly1305,
}

impl CipherSuite {
    fn code(self) -> u8 {
        match self {
            Self::Aes128Gcm => 1,
            Self::Aes256Gcm => 2,
            Self::Chacha20Poly1305 => 3,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Aes128Gcm),
            2 => Some(Self::Aes256Gcm),
            3 => Some(Self::Chacha20Poly1305),
            _ => None,
        }
    }

    fn key_len(self) -> usize {
        match self {
            Self::Aes128Gcm => 16,
            Self::Aes256Gcm | Self::Chacha20Poly1305 => 32,
        }
    }
}

/// One direction's key, IV and next sequence number.
pub struct DirectionSecrets {
    seq: u64,
    key: Zeroizing<Vec<u8>>,
    iv: Zeroizing<[u8; IV_LEN]>,
}

impl std::fmt::Debug for DirectionSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectionSecrets")
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl DirectionSecrets {
    /// The sequence number of the next record in this direction.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub(crate) fn key(&self) -> &[u8] {
        &self.key
    }

    pub(crate) fn iv(&self) -> &[u8; IV_LEN] {
        &self.iv
    }
}

/// Why extracted or received secrets cannot continue a session.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretsError {
    /// The two directions use different AEADs (not a TLS 1.3 session).
    #[error("the two directions' traffic secrets use different ciphers")]
    MixedSuites,
    /// An AEAD this layer does not implement.
    #[error("the session's cipher suite cannot be continued")]
    UnsupportedSuite,
    /// The encoded form is cut short, has trailing bytes, or an unknown version or
    /// suite code.
    #[error("malformed encoded session secrets")]
    Malformed,
}

/// The state a TLS 1.3 server session is continued from.
///
/// ```
/// use proxy_tls::continued::ContinuedSecrets;
///
/// // Bytes that are not an encoding are refused, never a panic.
/// assert!(ContinuedSecrets::decode(&[1, 9, 0]).is_err());
/// ```
#[derive(Debug)]
pub struct ContinuedSecrets {
    suite: CipherSuite,
    tx: DirectionSecrets,
    rx: DirectionSecrets,
}

fn direction(
    seq: u64,
    secrets: ConnectionTrafficSecrets,
) -> Result<(CipherSuite, DirectionSecrets), SecretsError> {
    let (suite, key, iv) = match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (CipherSuite::Aes128Gcm, key, iv),
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (CipherSuite::Aes256Gcm, key, iv),
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
            (CipherSuite::Chacha20Poly1305, key, iv)
        }
        _ => return Err(SecretsError::UnsupportedSuite),
    };
    let mut iv_bytes = Zeroizing::new([0u8; IV_LEN]);
    if iv.as_ref().len() != IV_LEN || key.as_ref().len() != suite.key_len() {
        return Err(SecretsError::UnsupportedSuite);
    }
    iv_bytes.copy_from_slice(iv.as_ref());
    // `AeadKey` zeroes itself on drop; `Iv` does not, so nothing more can be done
    // for rustls's copy of the IV than letting it go out of scope here.
    Ok((
        suite,
        DirectionSecrets {
            seq,
            key: Zeroizing::new(key.as_ref().to_vec()),
            iv: iv_bytes,
        },
    ))
}

impl ContinuedSecrets {
    /// Takes the secrets rustls extracted from a server connection (`tx` is the
    /// server's sending direction).
    pub fn from_extracted(extracted: ExtractedSecrets) -> Result<Self, SecretsError> {
        let (tx_suite, tx) = direction(extracted.tx.0, extracted.tx.1)?;
        let (rx_suite, rx) = direction(extracted.rx.0, extracted.rx.1)?;
        if tx_suite != rx_suite {
            return Err(SecretsError::MixedSuites);
        }
        Ok(Self {
            suite: tx_suite,
            tx,
            rx,
        })
    }

    /// The negotiated AEAD.
    pub fn suite(&self) -> CipherSuite {
        self.suite
    }

    /// The server's sending direction.
    pub fn tx(&self) -> &DirectionSecrets {
        &self.tx
    }

    /// The server's receiving direction.
    pub fn rx(&self) -> &DirectionSecrets {
        &self.rx
    }

    /// A copy with the next sequence numbers `tx` and `rx` (a continued stream's
    /// state when it is handed over again).
    pub(crate) fn with_sequence_numbers(&self, tx: u64, rx: u64) -> Self {
        let copy = |d: &DirectionSecrets, seq| DirectionSecrets {
            seq,
            key: d.key.clone(),
            iv: d.iv.clone(),
        };
        Self {
            suite: self.suite,
            tx: copy(&self.tx, tx),
            rx: copy(&self.rx, rx),
        }
    }

    /// The hand-over encoding: version, suite code, then per direction (tx, rx) the
    /// big-endian sequence number, the key (its length follows from the suite) and the
    /// 12-byte IV. The returned buffer is zeroed when dropped.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let key_len = self.suite.key_len();
        let mut out = Zeroizing::new(Vec::with_capacity(2 + 2 * (8 + key_len + IV_LEN)));
        out.push(ENCODING_VERSION);
        out.push(self.suite.code());
        for d in [&self.tx, &self.rx] {
            out.extend_from_slice(&d.seq.to_be_bytes());
            out.extend_from_slice(&d.key);
            out.extend_from_slice(&d.iv[..]);
        }
        out
    }

    /// Reads [`encode`](Self::encode)'s form; the whole input must be consumed.
    pub fn decode(bytes: &[u8]) -> Result<Self, SecretsError> {
        let [version, code, rest @ ..] = bytes else {
            return Err(SecretsError::Malformed);
        };
        if *version != ENCODING_VERSION {
            return Err(SecretsError::Malformed);
        }
        let suite = CipherSuite::from_code(*code).ok_or(SecretsError::Malformed)?;
        let key_len = suite.key_len();
        let one = 8 + key_len + IV_LEN;
        if rest.len() != 2 * one {
            return Err(SecretsError::Malformed);
        }
        let read = |d: &[u8]| {
            let mut seq = [0u8; 8];
            seq.copy_from_slice(&d[..8]);
            let mut iv = Zeroizing::new([0u8; IV_LEN]);
            iv.copy_from_slice(&d[8 + key_len..]);
            DirectionSecrets {
                seq: u64::from_be_bytes(seq),
                key: Zeroizing::new(d[8..8 + key_len].to_vec()),
                iv,
            }
        };
        Ok(Self {
            suite,
            tx: read(&rest[..one]),
            rx: read(&rest[one..]),
        })
    }
}
