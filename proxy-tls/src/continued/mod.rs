//! A TLS 1.3 server session continued in another process (hot upgrade).
//!
//! The old process reads its TLS connections through a [`RecordBoundary`] (which
//! knows whether rustls holds part of a record), and at a request boundary
//! [`extract`]s a quiescent TLS 1.3 session's traffic keys and record sequence
//! numbers (`ServerConnection::dangerous_extract_secrets`, allowed by
//! `ServerConfig::enable_secret_extraction`, which costs nothing per record: rustls
//! only keeps the keys it already has) with its SNI, ALPN and client certificate as
//! a [`TlsHandover`], whose encoding is sent with the socket; the new process builds
//! a [`ContinuedTlsStream`] over the socket ([`TlsHandover::continue_on`]) and
//! serves it with the same connection facts ([`TlsHandover::negotiated`]) as a
//! freshly terminated connection. TLS 1.2 sessions, and sessions with records to
//! send, plaintext unread or part of a record read, are refused ([`Refusal`]) and
//! drain where they are.
//!
//! The stream implements the post-handshake TLS 1.3 record protocol for
//! TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384 and TLS_CHACHA20_POLY1305_SHA256
//! on `ring::aead`: record size limits (RFC 8446 5.1, 5.2), TLSInnerPlaintext padding,
//! per-record nonces, close_notify, fatal alerts. rustls hands out AEAD keys, not
//! traffic secrets, so a client KeyUpdate (RFC 8446 4.6.3) cannot be followed: the
//! connection ends with an `internal_error` alert and the client reconnects.
//!
//! ```
//! use proxy_tls::continued::{ContinuedSecrets, SecretsError};
//!
//! assert_eq!(ContinuedSecrets::decode(b"").unwrap_err(), SecretsError::Malformed);
//! ```

mod boundary;
mod cipher;
mod handover;
#[cfg(test)]
mod handover_tests;
mod record;
mod secrets;
mod stream;
#[cfg(test)]
mod tests;

pub use boundary::RecordBoundary;
pub use handover::{extract, ExtractError, Refusal, TlsHandover};
pub use secrets::{CipherSuite, ContinuedSecrets, DirectionSecrets, SecretsError};
pub use stream::ContinuedTlsStream;

/// Feeds `data` to the encoded-secrets reader and to the inbound record decoder
/// under fixed all-zero AES-128-GCM keys: the fuzz target's entry (see
/// `crate::fuzzing`). Not a stable API.
#[doc(hidden)]
pub fn fuzz_records(data: &[u8]) {
    let _ = ContinuedSecrets::decode(data);
    let Ok(secrets) = ContinuedSecrets::decode(&zero_secrets_encoding()) else {
        return;
    };
    let (Some(rx), Some(tx)) = (
        cipher::DirectionCipher::new(secrets.suite(), secrets.rx()),
        cipher::DirectionCipher::new(secrets.suite(), secrets.tx()),
    ) else {
        return;
    };
    let mut layer = record::RecordLayer::new(rx, tx);
    let mut buf = bytes::BytesMut::from(data);
    while let Ok(Some(_)) = layer.read(&mut buf) {}
    let mut out = Vec::new();
    let _ = layer.seal_data(data, &mut out);
}

/// A fuzz seed: application data `content`, then a close_notify alert, sealed under
/// [`zero_secrets_encoding`]'s keys. Not a stable API.
#[doc(hidden)]
pub fn zero_secrets_records(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let Ok(secrets) = ContinuedSecrets::decode(&zero_secrets_encoding()) else {
        return out;
    };
    // Both directions share the all-zero key and IV, so what the sending direction
    // seals the receiving one opens.
    let Some(tx) = cipher::DirectionCipher::new(secrets.suite(), secrets.tx()) else {
        return out;
    };
    let Some(unused_rx) = cipher::DirectionCipher::new(secrets.suite(), secrets.rx()) else {
        return out;
    };
    let mut layer = record::RecordLayer::new(unused_rx, tx);
    let mut rest = content;
    while let Ok(n) = layer.seal_data(rest, &mut out) {
        rest = &rest[n..];
        if rest.is_empty() {
            break;
        }
    }
    let _ = layer.seal_alert(record::alert::CLOSE_NOTIFY, &mut out);
    out
}

/// The encoded all-zero AES-128-GCM secrets (sequence numbers 0) [`fuzz_records`]
/// decodes under; seeds are records sealed with them.
#[doc(hidden)]
pub fn zero_secrets_encoding() -> Vec<u8> {
    let mut encoded = vec![1u8, 1];
    for _ in 0..2 {
        encoded.extend_from_slice(&0u64.to_be_bytes());
        encoded.extend_from_slice(&[0u8; 16 + 12]);
    }
    encoded
}
