//! Where secrets from SDS go: the [`SecretSink`] seam, and [`TlsSecrets`], which
//! validates them as proxy-tls would and stores them in proxy-tls's
//! [`MemorySecrets`], whose TLS configs rotate to them (new handshakes take the new
//! certificate, old connections drain as proxy-tls configures).
//!
//! This is the crate's one dependency on another capability crate (proxy-tls), a
//! deliberate exception: SDS exists to feed the TLS layer's secrets.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    sync::{Arc, Mutex},
};

use proxy_core::DisplayChain;
use proxy_tls::{
    material,
    rotation::{MemorySecrets, Secret, SecretSource},
};

use crate::{resources::XdsSecret, Refusal};

/// Takes the secrets accepted from SDS, as a whole each time they change.
pub trait SecretSink: fmt::Debug + Send + Sync + 'static {
    /// Validates and installs `secrets` (every secret held, by name); a name no
    /// longer there was removed by the control plane.
    ///
    /// # Errors
    /// A [`Refusal`] naming the secret and the field: the update is NACKed and the
    /// sink must keep what it had.
    fn apply(&self, secrets: &BTreeMap<String, XdsSecret>) -> Result<(), Refusal>;
}

/// A [`SecretSink`] into proxy-tls's [`MemorySecrets`] (give the same store to
/// `proxy_tls::TlsRuntime::with_secrets`): every secret is checked first (the chain
/// parses, the key loads and matches the leaf, the leaf is valid now; CAs parse),
/// then all are stored, so a refused update stores nothing.
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use proxy_tls::rotation::MemorySecrets;
/// use proxy_xds::{resources::XdsSecret, SecretSink, TlsSecrets};
///
/// let store = Arc::new(MemorySecrets::default());
/// let sink = TlsSecrets::new(store.clone());
/// let mut bad = XdsSecret::default();
/// bad.roots = Some(b"not PEM".to_vec());
/// let err = sink.apply(&[("ca".to_owned(), bad)].into()).unwrap_err();
/// assert!(err.to_string().starts_with("secret \"ca\": "), "{err}");
/// ```
#[derive(Debug, Clone)]
pub struct TlsSecrets {
    store: Arc<MemorySecrets>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    /// The names stored by this sink, to remove those the control plane removes.
    stored: Arc<Mutex<BTreeSet<String>>>,
}

impl TlsSecrets {
    /// A sink into `store`, checking keys with rustls's ring provider.
    pub fn new(store: Arc<MemorySecrets>) -> Self {
        Self {
            store,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            stored: Arc::default(),
        }
    }

    /// The store the TLS layer reads.
    pub fn store(&self) -> &Arc<MemorySecrets> {
        &self.store
    }

    fn check(&self, name: &str, s: &XdsSecret) -> Result<Secret, Refusal> {
        let refuse = |e: proxy_tls::MaterialError| {
            Refusal::new(format!("secret {name:?}"), "", DisplayChain(&e))
        };
        match (&s.cert_chain, &s.key, &s.roots) {
            (Some(chain), Some(key), None) => {
                material::certified_key(
                    chain,
                    "tls_certificate.certificate_chain",
                    key,
                    "tls_certificate.private_key",
                    &self.provider,
                )
                .map_err(refuse)?;
                Ok(Secret::key_pair(chain.clone(), key.clone()))
            }
            (None, None, Some(roots)) => {
                material::parse_certs(roots, "validation_context.trusted_ca").map_err(refuse)?;
                Ok(Secret::roots(roots.clone()))
            }
            _ => Err(Refusal::new(
                format!("secret {name:?}"),
                "",
                "a certificate with its key, or trusted CAs, are needed",
            )),
        }
    }
}

impl SecretSink for TlsSecrets {
    fn apply(&self, secrets: &BTreeMap<String, XdsSecret>) -> Result<(), Refusal> {
        let checked = secrets
            .iter()
            .map(|(name, s)| Ok((name, self.check(name, s)?)))
            .collect::<Result<Vec<_>, Refusal>>()?;
        let mut stored = self.stored.lock().unwrap_or_else(|e| e.into_inner());
        for (name, secret) in checked {
            if self.store.get(name).as_deref() != Some(&secret) {
                self.store.set(name, secret);
            }
            stored.insert(name.clone());
        }
        let gone: Vec<String> = stored
            .iter()
            .filter(|n| !secrets.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            self.store.remove(&name);
            stored.remove(&name);
        }
        Ok(())
    }
}
