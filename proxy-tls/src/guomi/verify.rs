//! The rustls verifiers of Guomi peers: SM2 chains ([`super::chain`]) and TLS 1.3
//! handshake signatures. CertificateVerify signatures use the distinguishing
//! identifier `TLSv1.3+GM+Cipher+Suite` (RFC 8998 section 3.2.1).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError,
    PeerIncompatible, PeerMisbehaved, SignatureScheme,
};
use sm2::dsa::signature::Verifier;

use super::chain::{
    check_server_name, is_sm2_cert, parse, sm2_public_key, Sm2RootStore, OID_CLIENT_AUTH,
    OID_SERVER_AUTH,
};
use super::error::GuomiError;
use super::sign::signature_from_der;
use super::{SM2SIG_SM3, TLS13_SM2_ID};

// === impl Sm2ServerVerifier ===

/// Verifies a Guomi server: SM2 chain to the configured roots, the server
/// name, and the `sm2sig_sm3` CertificateVerify.
///
/// With [`Sm2ServerVerifier::with_fallback`], non-SM2 certificates and
/// signature schemes go to another verifier (webpki), so one client config
/// can reach Guomi and international servers.
#[derive(Debug)]
pub struct Sm2ServerVerifier {
    roots: Arc<Sm2RootStore>,
    fallback: Option<Arc<dyn ServerCertVerifier>>,
}

impl Sm2ServerVerifier {
    /// Trusts `roots` only.
    pub fn new(roots: Arc<Sm2RootStore>) -> Self {
        Self {
            roots,
            fallback: None,
        }
    }

    /// Trusts `roots` for SM2 certificates and hands any other certificate to `fallback`.
    pub fn with_fallback(roots: Arc<Sm2RootStore>, fallback: Arc<dyn ServerCertVerifier>) -> Self {
        Self {
            roots,
            fallback: Some(fallback),
        }
    }
}

impl ServerCertVerifier for Sm2ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if let Some(fallback) = self.fallback.as_ref().filter(|_| !is_sm2_cert(end_entity)) {
            return fallback.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            );
        }
        let ee = self
            .roots
            .verify_chain(end_entity, intermediates, now, OID_SERVER_AUTH)?;
        check_server_name(&ee, server_name)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        match &self.fallback {
            Some(fallback) if dss.scheme != SM2SIG_SM3 => {
                fallback.verify_tls12_signature(message, cert, dss)
            }
            _ => Err(PeerIncompatible::Tls12NotOfferedOrEnabled.into()),
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        match &self.fallback {
            Some(fallback) if dss.scheme != SM2SIG_SM3 => {
                fallback.verify_tls13_signature(message, cert, dss)
            }
            _ => verify_tls13_sm2(message, cert, dss),
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        supported_schemes(
            self.fallback
                .as_deref()
                .map(|f| f.supported_verify_schemes()),
        )
    }
}

// === impl Sm2ClientVerifier ===

/// Verifies Guomi client certificates (mutual TLS) against SM2 roots.
#[derive(Debug)]
pub struct Sm2ClientVerifier {
    roots: Arc<Sm2RootStore>,
    subjects: Vec<DistinguishedName>,
    mandatory: bool,
}

impl Sm2ClientVerifier {
    /// Requires a client certificate chaining to `roots`.
    pub fn new(roots: Arc<Sm2RootStore>) -> Self {
        let subjects = roots.subjects();
        Self {
            roots,
            subjects,
            mandatory: true,
        }
    }

    /// Asks for a certificate but lets clients without one in (the
    /// application then sees no peer identity).
    pub fn optional(mut self) -> Self {
        self.mandatory = false;
        self
    }
}

impl ClientCertVerifier for Sm2ClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.subjects
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.roots
            .verify_chain(end_entity, intermediates, now, OID_CLIENT_AUTH)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(PeerIncompatible::Tls12NotOfferedOrEnabled.into())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_sm2(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SM2SIG_SM3]
    }
}

fn supported_schemes(fallback: Option<Vec<SignatureScheme>>) -> Vec<SignatureScheme> {
    let mut schemes = vec![SM2SIG_SM3];
    schemes.extend(fallback.unwrap_or_default());
    schemes
}

/// CertificateVerify check: `sm2sig_sm3` with the TLS 1.3 identifier.
pub(crate) fn verify_tls13_sm2(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, Error> {
    if dss.scheme != SM2SIG_SM3 {
        return Err(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into());
    }
    let parsed = parse(cert)?;
    let key = sm2_public_key(&parsed, TLS13_SM2_ID).ok_or_else(|| {
        CertificateError::Other(OtherError(Arc::new(GuomiError::Certificate(
            "no SM2 public key".into(),
        ))))
    })?;
    let sig = signature_from_der(dss.signature()).ok_or(CertificateError::BadSignature)?;
    key.verify(message, &sig)
        .map_err(|_| CertificateError::BadSignature)?;
    Ok(HandshakeSignatureValid::assertion())
}
