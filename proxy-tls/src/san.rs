//! Subject-alt-name matching of upstream certificates (`subject_alt_names` of the
//! `tls` transport): the chain is verified against the roots, then the certificate
//! must hold a SAN that one of the matchers accepts; the server name is not checked
//! (Envoy's `match_typed_subject_alt_names`: Istio connects to pod addresses and
//! checks the SPIFFE id instead). The verifier applying them is
//! `upstream_verifier`'s.

use proxy_core::matcher::StringMatch;
use serde::{Deserialize, Serialize};

use crate::identity::PeerIdentityParts;

/// One accepted subject-alt-name: its kind and a [`StringMatch`].
///
/// ```yaml
/// subject_alt_names:
///   - uri: {exact: "spiffe://cluster.local/ns/shop/sa/cart"}
///   - dns: {suffix: ".shop.svc.cluster.local"}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SanMatch {
    /// A DNS name SAN. An `exact` value also matches a wildcard SAN covering it
    /// (`*.example.com` holds `api.example.com`), as RFC 6125 and Envoy do.
    Dns(StringMatch),
    /// A URI SAN, such as a SPIFFE id.
    Uri(StringMatch),
}

impl SanMatch {
    /// Whether the certificate's SANs hold one this accepts.
    ///
    /// # Example
    /// ```
    /// use proxy_core::matcher::StringMatch;
    /// use proxy_tls::{identity::PeerIdentityParts, san::SanMatch};
    ///
    /// let sans = PeerIdentityParts {
    ///     uri_sans: vec!["spiffe://td/ns/a/sa/web".into()],
    ///     dns_sans: vec!["*.example.com".into()],
    ///     ..Default::default()
    /// };
    /// assert!(SanMatch::Uri(StringMatch::Prefix("spiffe://td/".into())).accepts(&sans));
    /// assert!(SanMatch::Dns(StringMatch::Exact("api.example.com".into())).accepts(&sans));
    /// assert!(!SanMatch::Dns(StringMatch::Exact("a.b.example.com".into())).accepts(&sans));
    /// ```
    pub fn accepts(&self, sans: &PeerIdentityParts) -> bool {
        match self {
            Self::Uri(m) => sans.uri_sans.iter().any(|s| m.matches(s)),
            Self::Dns(StringMatch::Exact(name)) => sans.dns_sans.iter().any(|s| dns_exact(s, name)),
            Self::Dns(m) => sans.dns_sans.iter().any(|s| m.matches(s)),
        }
    }
}

/// An exact DNS name against a SAN, case-insensitively; a wildcard SAN
/// (`*.example.com`) covers one leftmost label.
fn dns_exact(san: &str, name: &str) -> bool {
    if san.eq_ignore_ascii_case(name) {
        return true;
    }
    match (san.strip_prefix("*."), name.split_once('.')) {
        (Some(base), Some((label, rest))) => !label.is_empty() && base.eq_ignore_ascii_case(rest),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_exact_covers_one_wildcard_label() {
        assert!(dns_exact("API.example.com", "api.example.com"));
        assert!(dns_exact("*.example.com", "api.example.com"));
        assert!(!dns_exact("*.example.com", "example.com"));
        assert!(!dns_exact("*.example.com", "a.b.example.com"));
        assert!(!dns_exact("*.example.com", ".example.com"));
        assert!(!dns_exact("example.com", "api.example.com"));
    }
}
