//! Errors of this crate: loading certificate material, building TLS configs, handshakes.

use std::{io, path::PathBuf};

/// Why certificate material (a certificate chain, a private key, a root set) was refused.
///
/// Every variant names the source (a file path or a secret name); the config field
/// that named it is on the [`ConfigBuildError`] around it. A refused update leaves the
/// running material in place.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MaterialError {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The source holds no PEM certificate.
    #[error("{source_name}: no certificate found")]
    NoCertificate {
        /// The file or secret name.
        source_name: String,
    },
    /// The source holds no PEM private key (PKCS#8, PKCS#1 or SEC1).
    #[error("{source_name}: no private key found")]
    NoKey {
        /// The file or secret name.
        source_name: String,
    },
    /// The PEM text is malformed.
    #[error("{source_name}: malformed PEM: {reason}")]
    Pem {
        /// The file or secret name.
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// A certificate could not be parsed as X.509.
    #[error("{source_name}: certificate {index} is not valid X.509: {reason}")]
    BadCertificate {
        /// The file or secret name.
        source_name: String,
        /// Position in the chain (0 is the leaf).
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The private key is of a type the crypto provider cannot use.
    #[error("{source_name}: unsupported private key")]
    UnsupportedKey {
        /// The file or secret name.
        source_name: String,
        /// The cause.
        #[source]
        source: rustls::Error,
    },
    /// The private key does not belong to the leaf certificate.
    #[error("{key}: private key does not match the certificate in {cert}")]
    KeyMismatch {
        /// The certificate source.
        cert: String,
        /// The key source.
        key: String,
    },
    /// The leaf certificate is outside its validity period.
    #[error("{source_name}: certificate {reason}")]
    Expired {
        /// The file or secret name.
        source_name: String,
        /// `expired at <unix seconds>` or `not valid before <unix seconds>`.
        reason: String,
    },
    /// A root set could not be used (no usable trust anchor).
    #[error("{source_name}: no usable root certificate: {reason}")]
    Roots {
        /// The file or secret name.
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// A secret named in the config is not (yet) provided by the secret source.
    #[error("secret {name}: not provided by the secret source")]
    MissingSecret {
        /// The secret name.
        name: String,
    },
}

/// Why a termination or origination config was refused: a bad setting, or material
/// that cannot be used. Every variant names the field path inside the section
/// (`certificates[1].cert`, `client_auth.roots.files[0]`); the wrapping variants
/// display as the field alone and carry the reason as their source, so
/// [`proxy_core::DisplayChain`] reads `certificates[1].cert: cannot read certs/x.pem: ...`.
///
/// Converts into [`proxy_core::ConfigError`] with the field as its path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigBuildError {
    /// A setting is invalid.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field path inside the section.
        field: String,
        /// Why.
        reason: String,
    },
    /// A section needs a cargo feature this build of proxy-tls leaves out.
    #[error(
        "{field}: needs the `{feature}` cargo feature of proxy-tls, which this build leaves out"
    )]
    FeatureDisabled {
        /// The field path inside the section.
        field: String,
        /// The cargo feature.
        feature: &'static str,
    },
    /// Certificate material named by `field` was refused.
    #[error("{field}")]
    Material {
        /// The field path inside the section.
        field: String,
        /// Why.
        #[source]
        source: MaterialError,
    },
    /// rustls refused the combination (protocol versions, a ticket key).
    #[error("{field}")]
    Rustls {
        /// The field path inside the section.
        field: String,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// The client-certificate verifier could not be built from the roots.
    #[error("{field}")]
    Verifier {
        /// The field path inside the section.
        field: String,
        /// Why.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    /// The Guomi config could not be built.
    #[cfg(feature = "guomi")]
    #[error("{field}")]
    Guomi {
        /// The field path inside the section.
        field: String,
        /// Why.
        #[source]
        source: crate::guomi::GuomiError,
    },
}

impl ConfigBuildError {
    /// An invalid setting at `field`.
    pub fn invalid(field: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.to_string(),
        }
    }

    /// Refused material named by `field`.
    pub fn material(field: impl Into<String>, source: MaterialError) -> Self {
        Self::Material {
            field: field.into(),
            source,
        }
    }

    /// The field path inside the section (empty: the section itself).
    pub fn field(&self) -> &str {
        match self {
            Self::Invalid { field, .. }
            | Self::FeatureDisabled { field, .. }
            | Self::Material { field, .. }
            | Self::Rustls { field, .. }
            | Self::Verifier { field, .. } => field,
            #[cfg(feature = "guomi")]
            Self::Guomi { field, .. } => field,
        }
    }

    /// Why, without the field: the reason and its sources.
    pub fn reason(&self) -> String {
        let full = crate::error_chain(self);
        let field = self.field();
        match full.strip_prefix(field) {
            Some(rest) if !field.is_empty() => rest.trim_start_matches(": ").to_owned(),
            _ => full,
        }
    }
}

impl From<ConfigBuildError> for proxy_core::ConfigError {
    fn from(e: ConfigBuildError) -> Self {
        proxy_core::ConfigError::new(e.field(), e.reason())
    }
}

/// Why a TLS handshake failed; [`HandshakeError::reason`] is the bounded metric label.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The handshake did not finish within the handshake timeout.
    #[error("tls handshake timed out")]
    Timeout,
    /// The peer closed or reset the connection during the handshake.
    #[error("peer closed the connection during the tls handshake")]
    Closed(#[source] io::Error),
    /// The peer sent something that is not a TLS ClientHello (or a malformed one).
    #[error("malformed tls handshake message")]
    Malformed(#[source] rustls::Error),
    /// No protocol version, cipher suite, group or signature scheme in common.
    #[error("no tls parameters in common with the peer")]
    Unsupported(#[source] rustls::Error),
    /// The client certificate was missing, invalid, expired or untrusted.
    #[error("client certificate refused")]
    ClientCertificate(#[source] rustls::Error),
    /// The server certificate (origination) was invalid or untrusted.
    #[error("server certificate refused")]
    ServerCertificate(#[source] rustls::Error),
    /// Any other TLS protocol error.
    #[error("tls protocol error")]
    Protocol(#[source] rustls::Error),
    /// The private-key offload engines failed the signing step.
    #[cfg(feature = "offload")]
    #[error("private key offload failed")]
    Offload(#[source] crate::offload::OffloadError),
    /// Early data held a request that is not safe to replay; answered 425 Too Early.
    #[error("early data refused: not an idempotent request")]
    EarlyDataRefused,
    /// Socket I/O failed.
    #[error("socket error during the tls handshake")]
    Io(#[source] io::Error),
}

impl HandshakeError {
    /// The class of an upstream (origination) failure an operator acts on, shown in
    /// the proxy's local reply as `x-proxy-error-detail` and in its logs:
    /// `tls_unknown_issuer`, `tls_bad_name`, `tls_expired`, `tls_no_alpn`,
    /// `tls_timeout`, else `tls_` and the metric reason (`tls_unsupported`, ...).
    pub fn class(&self) -> &'static str {
        use rustls::{AlertDescription, CertificateError, Error};
        let tls = match self {
            Self::ServerCertificate(e) | Self::Protocol(e) | Self::Unsupported(e) => Some(e),
            _ => None,
        };
        match tls {
            Some(Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
                "tls_unknown_issuer"
            }
            Some(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => "tls_bad_name",
            Some(Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            )) => "tls_expired",
            Some(Error::NoApplicationProtocol)
            | Some(Error::AlertReceived(AlertDescription::NoApplicationProtocol)) => "tls_no_alpn",
            _ => match self {
                Self::Timeout => "tls_timeout",
                Self::Closed(_) => "tls_peer_closed",
                Self::Malformed(_) => "tls_malformed",
                Self::Unsupported(_) => "tls_unsupported",
                Self::ServerCertificate(_) => "tls_server_certificate",
                Self::ClientCertificate(_) => "tls_client_certificate",
                Self::Io(_) => "tls_io",
                _ => "tls_protocol",
            },
        }
    }

    /// A bounded label for the `reason` of `proxy_tls_handshake_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Closed(_) => "peer_closed",
            Self::Malformed(_) => "malformed",
            Self::Unsupported(_) => "unsupported",
            Self::ClientCertificate(_) => "client_certificate",
            Self::ServerCertificate(_) => "server_certificate",
            Self::Protocol(_) => "protocol",
            #[cfg(feature = "offload")]
            Self::Offload(_) => "offload",
            Self::EarlyDataRefused => "early_data_refused",
            Self::Io(_) => "io",
        }
    }

    /// Classifies a rustls error met while accepting (`client = true`: our peer is a
    /// client, so certificate errors concern the client certificate).
    pub fn from_rustls(err: rustls::Error, peer_is_client: bool) -> Self {
        use rustls::Error as E;
        match &err {
            E::InvalidMessage(_)
            | E::InappropriateMessage { .. }
            | E::InappropriateHandshakeMessage { .. } => Self::Malformed(err),
            E::PeerIncompatible(_) => Self::Unsupported(err),
            E::InvalidCertificate(_) | E::NoCertificatesPresented => {
                if peer_is_client {
                    Self::ClientCertificate(err)
                } else {
                    Self::ServerCertificate(err)
                }
            }
            E::AlertReceived(rustls::AlertDescription::CertificateRequired)
            | E::AlertReceived(rustls::AlertDescription::BadCertificate)
            | E::AlertReceived(rustls::AlertDescription::UnknownCA)
            | E::AlertReceived(rustls::AlertDescription::CertificateExpired)
            | E::AlertReceived(rustls::AlertDescription::CertificateUnknown)
                if !peer_is_client =>
            {
                Self::ClientCertificate(err)
            }
            _ => Self::Protocol(err),
        }
    }
}
