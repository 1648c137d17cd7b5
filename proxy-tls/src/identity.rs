//! The peer identity of a verified certificate: subject, URI SANs (SPIFFE ids) and
//! DNS SANs, for RBAC and access logs.

use rustls::pki_types::CertificateDer;
use x509_cert::{
    der::Decode,
    ext::pkix::{name::GeneralName, SubjectAltName},
};

/// What identifies the holder of a certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentityParts {
    /// The subject distinguished name (RFC 4514 text), when not empty.
    pub subject: Option<String>,
    /// URI subjectAltNames, e.g. `spiffe://cluster.local/ns/default/sa/web`.
    pub uri_sans: Vec<String>,
    /// DNS subjectAltNames.
    pub dns_sans: Vec<String>,
}

impl PeerIdentityParts {
    /// Extracts the identity from a DER certificate; `None` if it does not parse.
    pub fn from_der(cert: &CertificateDer<'_>) -> Option<Self> {
        let cert = x509_cert::Certificate::from_der(cert).ok()?;
        let tbs = &cert.tbs_certificate;
        let subject = tbs.subject.to_string();
        let mut out = Self {
            subject: (!subject.is_empty()).then_some(subject),
            ..Self::default()
        };
        for ext in tbs.extensions.iter().flatten() {
            if ext.extn_id != const_oid_san() {
                continue;
            }
            let Ok(san) = SubjectAltName::from_der(ext.extn_value.as_bytes()) else {
                continue;
            };
            for name in san.0 {
                match name {
                    GeneralName::UniformResourceIdentifier(uri) => {
                        out.uri_sans.push(uri.as_str().to_owned());
                    }
                    GeneralName::DnsName(dns) => out.dns_sans.push(dns.as_str().to_owned()),
                    _ => {}
                }
            }
        }
        Some(out)
    }
}

fn const_oid_san() -> x509_cert::der::oid::ObjectIdentifier {
    <SubjectAltName as x509_cert::der::oid::AssociatedOid>::OID
}

/// Puts the session facts where core and the request stack look for them: core's
/// `TlsInfo` (with the verified peer identity) in the connection's extensions.
pub(crate) fn insert_tls_info(ext: &mut http::Extensions, facts: &crate::accept::Negotiated) {
    use proxy_core::connection::{PeerIdentity, TlsInfo};
    ext.insert(TlsInfo {
        sni: facts.sni.clone(),
        alpn: facts.alpn.clone(),
        version: facts.version,
        cipher: facts.cipher,
        peer: facts.peer.as_ref().map(|p| PeerIdentity {
            subject: p.subject.clone(),
            uri_sans: p.uri_sans.clone(),
            dns_sans: p.dns_sans.clone(),
        }),
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn subject_uri_and_dns_sans_are_extracted() {
        let mut params = rcgen::CertificateParams::new(vec!["web.test".to_owned()]).unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://cluster.local/ns/default/sa/web"
                .try_into()
                .unwrap(),
        ));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "web client");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let id = PeerIdentityParts::from_der(cert.der()).unwrap();
        assert_eq!(id.subject.as_deref(), Some("CN=web client"));
        assert_eq!(
            id.uri_sans,
            vec!["spiffe://cluster.local/ns/default/sa/web"]
        );
        assert_eq!(id.dns_sans, vec!["web.test"]);
    }

    #[test]
    fn garbage_gives_none() {
        assert!(PeerIdentityParts::from_der(&CertificateDer::from(vec![1, 2, 3])).is_none());
    }
}
