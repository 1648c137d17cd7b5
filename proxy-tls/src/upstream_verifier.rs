//! The certificate verifier of TLS origination when it is not rustls' own
//! (`verify: false`, or `subject_alt_names` set): one verifier whose
//! [`ServerCertCheck`] says what is asked of the certificate, while the handshake
//! signatures are always checked with the provider's algorithms (so the peer holds the
//! key of the certificate it sent).

use std::sync::Arc;

use rustls::{
    client::{
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        verify_server_cert_signed_by_trust_anchor,
    },
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime},
    server::ParsedCertificate,
    CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::{identity::PeerIdentityParts, san::SanMatch};

/// What the upstream's certificate must satisfy.
#[derive(Debug)]
pub(crate) enum ServerCertCheck {
    /// `verify: false`: any certificate is accepted.
    AcceptAny,
    /// `subject_alt_names`: the chain is verified against `roots`, then the
    /// certificate must hold a SAN one of the matchers accepts; the server name is
    /// not checked.
    Sans {
        roots: Arc<RootCertStore>,
        matchers: Arc<[SanMatch]>,
    },
}

/// A [`ServerCertVerifier`] applying a [`ServerCertCheck`], with the handshake
/// signatures checked by `provider`.
#[derive(Debug)]
pub(crate) struct UpstreamCertVerifier {
    provider: Arc<CryptoProvider>,
    check: ServerCertCheck,
}

impl UpstreamCertVerifier {
    /// Accepts any certificate (`verify: false`).
    pub(crate) fn accept_any(provider: Arc<CryptoProvider>) -> Self {
        Self {
            provider,
            check: ServerCertCheck::AcceptAny,
        }
    }

    /// Verifies the chain against `roots` and the SANs against `matchers`.
    pub(crate) fn sans(
        roots: RootCertStore,
        provider: Arc<CryptoProvider>,
        matchers: Arc<[SanMatch]>,
    ) -> Self {
        Self {
            provider,
            check: ServerCertCheck::Sans {
                roots: Arc::new(roots),
                matchers,
            },
        }
    }
}

impl ServerCertVerifier for UpstreamCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let (roots, matchers) = match &self.check {
            ServerCertCheck::AcceptAny => return Ok(ServerCertVerified::assertion()),
            ServerCertCheck::Sans { roots, matchers } => (roots, matchers),
        };
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let sans = PeerIdentityParts::from_der(end_entity).ok_or(
            rustls::Error::InvalidCertificate(CertificateError::BadEncoding),
        )?;
        if matchers.iter().any(|m| m.accepts(&sans)) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
