//! SDS: `envoy.extensions.transport_sockets.tls.v3.Secret` into PEM material for
//! the proxy's TLS secrets (a certificate chain and key, or trusted CAs).

use std::fmt;

use envoy_types::pb::envoy::{
    config::core::v3::{data_source::Specifier, DataSource},
    extensions::transport_sockets::tls::v3::{
        secret::Type, CertificateValidationContext, Secret, TlsCertificate,
    },
};

use super::refuse_leftover;
use crate::Refusal;

/// `TlsCertificate`'s fields.
const TLS_CERTIFICATE: super::fields::Fields = &[
    (1, "certificate_chain"),
    (2, "private_key"),
    (3, "password"),
    (4, "ocsp_staple"),
    (5, "signed_certificate_timestamp"),
    (6, "private_key_provider"),
    (7, "watched_directory"),
    (8, "pkcs12"),
    (9, "tls_params"),
];

/// `CertificateValidationContext`'s fields by number (an SDS secret's, and the
/// default context of a `CommonTlsContext`'s combined validation context).
pub(super) const VALIDATION_CONTEXT: super::fields::Fields = &[
    (1, "trusted_ca"),
    (2, "verify_certificate_hash"),
    (3, "verify_certificate_spki"),
    (6, "require_signed_certificate_timestamp"),
    (7, "crl"),
    (8, "allow_expired_certificate"),
    (9, "match_subject_alt_names"),
    (10, "trust_chain_verification"),
    (11, "watched_directory"),
    (12, "custom_validator_config"),
    (13, "ca_certificate_provider_instance"),
    (14, "only_verify_leaf_cert_crl"),
    (15, "match_typed_subject_alt_names"),
    (16, "max_verify_depth"),
    (17, "system_root_certs"),
    (18, "suppress_client_ca_list"),
];

/// A secret as the control plane sent it: PEM bytes, checked only for their
/// presence here (the TLS layer that uses them validates them; see
/// [`SecretSink`](crate::SecretSink)).
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct XdsSecret {
    /// A PEM certificate chain, leaf first (`tls_certificate.certificate_chain`).
    pub cert_chain: Option<Vec<u8>>,
    /// A PEM private key (`tls_certificate.private_key`).
    pub key: Option<Vec<u8>>,
    /// PEM CA certificates (`validation_context.trusted_ca`).
    pub roots: Option<Vec<u8>>,
}

impl fmt::Debug for XdsSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("XdsSecret")
            .field("cert_chain", &self.cert_chain.as_ref().map(Vec::len))
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("roots", &self.roots.as_ref().map(Vec::len))
            .finish()
    }
}

/// Translates an SDS `Secret`: a `tls_certificate` (chain and key, inline) or a
/// `validation_context` (`trusted_ca`, inline). Session ticket keys, generic
/// secrets, files, environment variables, private key providers and every other
/// field are refused, named.
///
/// # Errors
/// A [`Refusal`] naming the secret and the field.
///
/// # Example
/// ```
/// use envoy_types::pb::envoy::{
///     config::core::v3::{data_source::Specifier, DataSource},
///     extensions::transport_sockets::tls::v3::{secret::Type, Secret, TlsCertificate},
/// };
/// let inline = |s: &str| Some(DataSource {
///     specifier: Some(Specifier::InlineString(s.into())),
///     ..DataSource::default()
/// });
/// let s = Secret {
///     name: "web".into(),
///     r#type: Some(Type::TlsCertificate(TlsCertificate {
///         certificate_chain: inline("-----BEGIN CERTIFICATE-----"),
///         private_key: inline("-----BEGIN PRIVATE KEY-----"),
///         ..TlsCertificate::default()
///     })),
/// };
/// let x = proxy_xds::resources::secret(&s).unwrap();
/// assert!(x.cert_chain.is_some() && x.key.is_some() && x.roots.is_none());
/// ```
pub fn secret(s: &Secret) -> Result<XdsSecret, Refusal> {
    let named = |r: Refusal| Refusal {
        resource: format!("secret {:?}", s.name),
        ..r
    };
    match &s.r#type {
        Some(Type::TlsCertificate(c)) => tls_certificate(c)
            .map_err(|r| r.within("tls_certificate"))
            .map_err(named),
        Some(Type::ValidationContext(v)) => validation_context(v)
            .map_err(|r| r.within("validation_context"))
            .map_err(named),
        Some(Type::SessionTicketKeys(_)) => Err(named(Refusal::new(
            "",
            "session_ticket_keys",
            "not supported: the proxy keeps its own ticket keys",
        ))),
        Some(Type::GenericSecret(_)) => Err(named(Refusal::new(
            "",
            "generic_secret",
            "not supported: no filter here reads generic secrets",
        ))),
        None => Err(named(Refusal::new(
            "",
            "",
            "neither tls_certificate nor validation_context is set",
        ))),
    }
}

fn tls_certificate(c: &TlsCertificate) -> Result<XdsSecret, Refusal> {
    let mut rest = c.clone();
    rest.certificate_chain = None;
    rest.private_key = None;
    refuse_leftover(&rest, TLS_CERTIFICATE)?;
    let cert_chain = data(c.certificate_chain.as_ref(), "certificate_chain")?;
    let key = data(c.private_key.as_ref(), "private_key")?;
    Ok(XdsSecret {
        cert_chain: Some(cert_chain),
        key: Some(key),
        roots: None,
    })
}

fn validation_context(v: &CertificateValidationContext) -> Result<XdsSecret, Refusal> {
    let mut rest = v.clone();
    rest.trusted_ca = None;
    refuse_leftover(&rest, VALIDATION_CONTEXT)?;
    Ok(XdsSecret {
        roots: Some(data(v.trusted_ca.as_ref(), "trusted_ca")?),
        ..XdsSecret::default()
    })
}

/// The bytes of an inline data source; files and environment variables are
/// refused (the control plane does not know this host's files).
fn data(d: Option<&DataSource>, field: &str) -> Result<Vec<u8>, Refusal> {
    let d = d.ok_or_else(|| Refusal::new("", field, "missing"))?;
    if d.watched_directory.is_some() {
        let path = format!("{field}.watched_directory");
        return Err(Refusal::new("", path, "not supported: data must be inline"));
    }
    let bytes = match &d.specifier {
        Some(Specifier::InlineBytes(b)) => b.clone(),
        Some(Specifier::InlineString(s)) => s.as_bytes().to_vec(),
        Some(Specifier::Filename(_)) => {
            let path = format!("{field}.filename");
            return Err(Refusal::new("", path, "not supported: data must be inline"));
        }
        Some(Specifier::EnvironmentVariable(_)) => {
            let path = format!("{field}.environment_variable");
            return Err(Refusal::new("", path, "not supported: data must be inline"));
        }
        None => return Err(Refusal::new("", field, "empty")),
    };
    if bytes.is_empty() {
        return Err(Refusal::new("", field, "empty"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::GenericSecret;

    use super::*;

    fn inline(s: &str) -> Option<DataSource> {
        Some(DataSource {
            specifier: Some(Specifier::InlineString(s.into())),
            ..DataSource::default()
        })
    }

    #[test]
    fn secrets_translate_or_name_the_field() {
        let ca = Secret {
            name: "ca".into(),
            r#type: Some(Type::ValidationContext(CertificateValidationContext {
                trusted_ca: inline("ROOTS"),
                ..CertificateValidationContext::default()
            })),
        };
        assert_eq!(secret(&ca).unwrap().roots.as_deref(), Some(&b"ROOTS"[..]));

        let refused = |s: Secret| secret(&s).unwrap_err().to_string();
        let mut c = TlsCertificate {
            certificate_chain: inline("CHAIN"),
            private_key: Some(DataSource {
                specifier: Some(Specifier::Filename("/etc/key.pem".into())),
                ..DataSource::default()
            }),
            ..TlsCertificate::default()
        };
        let cert = |c: &TlsCertificate| Secret {
            name: "web".into(),
            r#type: Some(Type::TlsCertificate(c.clone())),
        };
        assert_eq!(
            refused(cert(&c)),
            "secret \"web\": tls_certificate.private_key.filename: not supported: data must be inline"
        );
        c.private_key = inline("KEY");
        c.password = inline("secret");
        assert_eq!(
            refused(cert(&c)),
            "secret \"web\": tls_certificate.password: not supported: it would change behaviour"
        );
        c.password = None;
        c.certificate_chain = inline("");
        assert_eq!(
            refused(cert(&c)),
            "secret \"web\": tls_certificate.certificate_chain: empty"
        );
        let generic = Secret {
            name: "g".into(),
            r#type: Some(Type::GenericSecret(GenericSecret::default())),
        };
        assert!(refused(generic).starts_with("secret \"g\": generic_secret: not supported"));
        let debug = format!("{:?}", secret(&ca).unwrap());
        assert!(!debug.contains("ROOTS"), "{debug}");
    }
}
