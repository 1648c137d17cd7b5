//! Guomi (ShangMi) cryptography for TLS 1.3, as RFC 8998 specifies it.
//!
//! A rustls [`CryptoProvider`](rustls::crypto::CryptoProvider) built on the
//! RustCrypto `sm2`, `sm3` and `sm4` crates:
//!
//! - cipher suites `TLS_SM4_GCM_SM3` (0x00C6) and `TLS_SM4_CCM_SM3` (0x00C7),
//!   with SM3 as the transcript hash and HMAC-SM3 inside HKDF;
//! - ECDHE over `curveSM2` (named group 41);
//! - `sm2sig_sm3` (0x0708) signatures. CertificateVerify uses the SM2
//!   distinguishing identifier `TLSv1.3+GM+Cipher+Suite`; certificate
//!   signatures use the default identifier `1234567812345678`.
//!
//! RFC 8998 defines these suites for TLS 1.3 only, so a Guomi config never
//! negotiates TLS 1.2. Certificates are checked by this module's own
//! verifiers ([`Sm2ServerVerifier`], [`Sm2ClientVerifier`]): webpki does not
//! know SM2.
//!
//! A listener that serves both Guomi and international clients either keeps
//! two `ServerConfig`s and picks one per connection with [`offers_guomi`]
//! (through rustls' `Acceptor`), or uses one config over
//! [`provider_with`], which offers both families and lets the client's
//! cipher suite order decide.
//!
//! ```no_run
//! # fn main() -> Result<(), proxy_tls::guomi::GuomiError> {
//! use proxy_tls::guomi::{GuomiClientBuilder, GuomiServerBuilder};
//! let server = GuomiServerBuilder::from_pem_files("sm2.crt", "sm2.key")?.build()?;
//! let client = GuomiClientBuilder::from_root_pem_file("sm2-ca.crt")?.build()?;
//! # let _ = (server, client);
//! # Ok(())
//! # }
//! ```

mod chain;
mod config;
mod error;
mod kx;
mod provider;
mod sign;
mod suites;
mod verify;

#[cfg(test)]
mod kat;
#[cfg(test)]
mod props;
#[cfg(test)]
pub(crate) mod test_pki;

pub use chain::Sm2RootStore;
pub use config::{GuomiClientBuilder, GuomiServerBuilder};
pub use error::GuomiError;
pub use kx::CURVE_SM2;
pub use provider::{offers_guomi, provider, provider_with};
pub use sign::{load_sm2_key, Sm2SigningKey};
pub use suites::{sm3_hash, TLS13_SM4_CCM_SM3, TLS13_SM4_GCM_SM3};
pub use verify::{Sm2ClientVerifier, Sm2ServerVerifier};

use rustls::{CipherSuite, NamedGroup, SignatureScheme};

/// `TLS_SM4_GCM_SM3`, RFC 8998 section 2.
pub const SM4_GCM_SM3: CipherSuite = CipherSuite::Unknown(0x00c6);
/// `TLS_SM4_CCM_SM3`, RFC 8998 section 2.
pub const SM4_CCM_SM3: CipherSuite = CipherSuite::Unknown(0x00c7);
/// The `curveSM2` named group, RFC 8998 section 3.1.
pub const CURVE_SM2_GROUP: NamedGroup = NamedGroup::Unknown(41);
/// The `sm2sig_sm3` signature scheme, RFC 8998 section 3.1.
pub const SM2SIG_SM3: SignatureScheme = SignatureScheme::Unknown(0x0708);

/// SM2 distinguishing identifier for TLS 1.3 CertificateVerify (RFC 8998 section 3.2.1).
pub const TLS13_SM2_ID: &str = "TLSv1.3+GM+Cipher+Suite";
/// SM2 distinguishing identifier for certificate signatures (GM/T 0009 default).
pub const CERT_SM2_ID: &str = "1234567812345678";
