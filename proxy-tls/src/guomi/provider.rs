//! The Guomi `CryptoProvider`, alone or next to another provider's suites.

use rand_core::{OsRng, RngCore};
use rustls::crypto::{CryptoProvider, GetRandomFailed, SecureRandom};
use rustls::server::ClientHello;

use super::kx::CURVE_SM2;
use super::sign::Sm2KeyProvider;
use super::suites::{TLS13_SM4_CCM_SM3, TLS13_SM4_GCM_SM3};
use super::{SM4_CCM_SM3, SM4_GCM_SM3};

/// The RFC 8998 provider: SM4-GCM-SM3 and SM4-CCM-SM3 (in that order of
/// preference), curveSM2 only, SM2 keys only.
///
/// Its `signature_verification_algorithms` are ring's, used only if someone
/// builds a webpki verifier over it; SM2 chains go through
/// [`Sm2ServerVerifier`](super::Sm2ServerVerifier) and
/// [`Sm2ClientVerifier`](super::Sm2ClientVerifier).
pub fn provider() -> CryptoProvider {
    CryptoProvider {
        cipher_suites: vec![TLS13_SM4_GCM_SM3, TLS13_SM4_CCM_SM3],
        kx_groups: vec![CURVE_SM2],
        signature_verification_algorithms: rustls::crypto::ring::default_provider()
            .signature_verification_algorithms,
        secure_random: &OsRandom,
        key_provider: &Sm2KeyProvider,
    }
}

/// Guomi and `base`'s suites side by side in one provider: the Guomi suites
/// and curveSM2 first, then everything of `base` (its key provider and
/// signature algorithms are kept, so RSA/ECDSA keys still load).
///
/// A server over this provider follows the client's cipher suite order, so a
/// Guomi client gets SM4 and an international client AES or ChaCha20. A
/// client over it sends its first key share on curveSM2, which costs an
/// international server a HelloRetryRequest.
pub fn provider_with(base: CryptoProvider) -> CryptoProvider {
    let mut cipher_suites = vec![TLS13_SM4_GCM_SM3, TLS13_SM4_CCM_SM3];
    cipher_suites.extend(base.cipher_suites);
    let mut kx_groups = vec![CURVE_SM2];
    kx_groups.extend(base.kx_groups);
    CryptoProvider {
        cipher_suites,
        kx_groups,
        ..base
    }
}

/// Whether the client offers one of the RFC 8998 cipher suites; the
/// termination layer uses it to pick the Guomi `ServerConfig` per connection
/// (rustls `Acceptor`).
pub fn offers_guomi(hello: &ClientHello<'_>) -> bool {
    hello
        .cipher_suites()
        .iter()
        .any(|s| *s == SM4_GCM_SM3 || *s == SM4_CCM_SM3)
}

/// The operating system's random generator.
#[derive(Debug)]
struct OsRandom;

impl SecureRandom for OsRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        OsRng.try_fill_bytes(buf).map_err(|_| GetRandomFailed)
    }
}
