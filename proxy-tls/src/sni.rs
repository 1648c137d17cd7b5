//! SNI certificate selection: exact names, then a wildcard one label up, then the
//! default certificate.

use std::{collections::HashMap, sync::Arc};

use rustls::{
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};

/// The certificates of one listener, indexed by server name. Immutable: a rotation
/// builds a new one.
#[derive(Debug, Default)]
pub struct CertStore {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the suffix after `*.` (`example.com` for `*.example.com`).
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl CertStore {
    /// Adds `key` for `names` (`*.example.com` is a wildcard); the first name added for
    /// a given pattern wins. `default` makes it the fallback (else the first added is).
    pub fn add(&mut self, names: &[String], key: Arc<CertifiedKey>, default: bool) {
        for name in names {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some(suffix) = name.strip_prefix("*.") {
                self.wildcard
                    .entry(suffix.to_owned())
                    .or_insert_with(|| key.clone());
            } else {
                self.exact.entry(name).or_insert_with(|| key.clone());
            }
        }
        if default || self.default.is_none() {
            self.default = Some(key);
        }
    }

    /// The certificate for `server_name` (`None`: no SNI sent).
    pub fn pick(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = server_name else {
            return self.default.clone();
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(k) = self.exact.get(&name) {
            return Some(k.clone());
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(k) = self.wildcard.get(parent) {
                return Some(k.clone());
            }
        }
        self.default.clone()
    }
}

/// A rustls resolver over a [`CertStore`].
#[derive(Debug)]
pub struct SniResolver(pub Arc<CertStore>);

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.pick(client_hello.server_name())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use rustls::pki_types::CertificateDer;

    use super::*;

    fn key(tag: u8) -> Arc<CertifiedKey> {
        let k = rcgen::KeyPair::generate().unwrap();
        let der = rustls::pki_types::PrivateKeyDer::try_from(k.serialize_der()).unwrap();
        let signer = rustls::crypto::ring::sign::any_supported_type(&der).unwrap();
        Arc::new(CertifiedKey::new(
            vec![CertificateDer::from(vec![tag])],
            signer,
        ))
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let mut s = CertStore::default();
        s.add(&["a.test".into()], key(1), false);
        s.add(&["*.b.test".into(), "b.test".into()], key(2), false);
        s.add(&["fallback.test".into()], key(3), true);
        let tag = |n: Option<&str>| s.pick(n).unwrap().cert[0].as_ref()[0];
        assert_eq!(tag(Some("a.test")), 1);
        assert_eq!(tag(Some("A.TEST.")), 1);
        assert_eq!(tag(Some("x.b.test")), 2);
        assert_eq!(tag(Some("b.test")), 2);
        // A wildcard covers exactly one label.
        assert_eq!(tag(Some("y.x.b.test")), 3);
        assert_eq!(tag(Some("other.test")), 3);
        assert_eq!(tag(None), 3);
    }

    #[test]
    fn the_first_certificate_is_the_default_unless_marked() {
        let mut s = CertStore::default();
        s.add(&["a.test".into()], key(1), false);
        s.add(&["b.test".into()], key(2), false);
        assert_eq!(s.pick(Some("zzz")).unwrap().cert[0].as_ref()[0], 1);
    }
}
