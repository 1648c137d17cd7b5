//! The secret source seam and its in-memory implementation.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, Weak},
};

use bytes::Bytes;

/// Named PEM material, as an SDS `Secret` carries it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret {
    /// A PEM certificate chain (leaf first).
    pub cert_chain: Option<Bytes>,
    /// A PEM private key.
    pub key: Option<Bytes>,
    /// PEM CA certificates (a validation context).
    pub roots: Option<Bytes>,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("Secret")
            .field("cert_chain", &self.cert_chain.as_ref().map(Bytes::len))
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("roots", &self.roots.as_ref().map(Bytes::len))
            .finish()
    }
}

impl Secret {
    /// A certificate chain and key.
    pub fn key_pair(cert_chain: impl Into<Bytes>, key: impl Into<Bytes>) -> Self {
        Self {
            cert_chain: Some(cert_chain.into()),
            key: Some(key.into()),
            roots: None,
        }
    }

    /// A set of trusted roots.
    pub fn roots(roots: impl Into<Bytes>) -> Self {
        Self {
            roots: Some(roots.into()),
            ..Self::default()
        }
    }
}

/// A callback run after a secret changed.
pub type OnChange = dyn Fn() + Send + Sync;

/// Where named secrets come from (an SDS client, a vault, tests).
///
/// Consumers read with [`SecretSource::get`] when they build a TLS config, and
/// [`SecretSource::subscribe`] to rebuild when anything changes; they validate the
/// new material themselves and keep the old on failure.
pub trait SecretSource: fmt::Debug + Send + Sync + 'static {
    /// The current value of secret `name`.
    fn get(&self, name: &str) -> Option<Arc<Secret>>;

    /// Calls `on_change` after every change, as long as it is alive.
    fn subscribe(&self, on_change: Weak<OnChange>);
}

/// An in-memory [`SecretSource`]: [`MemorySecrets::set`] replaces a secret and runs
/// the subscribers (the TLS configs rebuild before `set` returns).
///
/// # Example
/// ```
/// use proxy_tls::rotation::{MemorySecrets, Secret, SecretSource};
///
/// let secrets = MemorySecrets::default();
/// secrets.set("ca", Secret::roots("-----BEGIN CERTIFICATE-----..."));
/// assert!(secrets.get("ca").is_some());
/// ```
#[derive(Default)]
pub struct MemorySecrets {
    secrets: Mutex<HashMap<String, Arc<Secret>>>,
    subscribers: Mutex<Vec<Weak<OnChange>>>,
}

impl fmt::Debug for MemorySecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self
            .secrets
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("MemorySecrets")
            .field("names", &names)
            .finish()
    }
}

impl MemorySecrets {
    /// Sets secret `name` and notifies the subscribers.
    pub fn set(&self, name: &str, secret: Secret) {
        if let Ok(mut m) = self.secrets.lock() {
            m.insert(name.to_owned(), Arc::new(secret));
        }
        self.notify();
    }

    /// Removes secret `name` and notifies the subscribers (who keep their running
    /// material: a missing secret is refused like a bad one).
    pub fn remove(&self, name: &str) {
        if let Ok(mut m) = self.secrets.lock() {
            m.remove(name);
        }
        self.notify();
    }

    fn notify(&self) {
        let alive: Vec<Arc<OnChange>> = match self.subscribers.lock() {
            Ok(mut subs) => {
                subs.retain(|w| w.strong_count() > 0);
                subs.iter().filter_map(Weak::upgrade).collect()
            }
            Err(_) => Vec::new(),
        };
        for f in alive {
            f();
        }
    }
}

impl SecretSource for MemorySecrets {
    fn get(&self, name: &str) -> Option<Arc<Secret>> {
        self.secrets.lock().ok()?.get(name).cloned()
    }

    fn subscribe(&self, on_change: Weak<OnChange>) {
        if let Ok(mut subs) = self.subscribers.lock() {
            // Listeners rebuilt by config reloads leave dead entries behind: drop them
            // here too, not only when a secret changes.
            subs.retain(|w| w.strong_count() > 0);
            subs.push(on_change);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn reloads_do_not_pile_up_dead_subscribers() {
        let s = MemorySecrets::default();
        let live: Arc<OnChange> = Arc::new(|| {});
        s.subscribe(Arc::downgrade(&live));
        // 50 reloads: each new listener subscribes, the one it replaces is dropped.
        for _ in 0..50 {
            let f: Arc<OnChange> = Arc::new(|| {});
            s.subscribe(Arc::downgrade(&f));
        }
        assert_eq!(s.subscribers.lock().unwrap().len(), 2);
    }

    #[test]
    fn subscribers_run_on_set_until_dropped() {
        let s = MemorySecrets::default();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let f: Arc<OnChange> = Arc::new(move || {
            h.fetch_add(1, Ordering::SeqCst);
        });
        s.subscribe(Arc::downgrade(&f));
        s.set("a", Secret::roots("x"));
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        drop(f);
        s.set("a", Secret::roots("y"));
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert_eq!(s.get("a").unwrap().roots.as_deref(), Some(&b"y"[..]));
        assert!(format!("{:?}", Secret::key_pair("c", "k")).contains("redacted"));
    }
}
