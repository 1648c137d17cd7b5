//! A listener's resumption state: ticket keys and the stateful session cache.

use std::sync::Arc;

use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};

use crate::{config::TerminationConfig, error::ConfigBuildError};

/// A listener's resumption state: the ticket keys and the stateful session cache.
/// Kept across material rotations, and across config reloads when the `session` and
/// `early_data` sections are unchanged ([`crate::TlsRuntime`] keeps it by listener).
#[derive(Clone)]
pub struct SessionState {
    pub(super) ticketer: Option<Arc<dyn ProducesTickets>>,
    pub(super) cache: Option<Arc<dyn StoresServerSessions>>,
}

impl std::fmt::Debug for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionState")
            .field("tickets", &self.ticketer.is_some())
            .field("cache", &self.cache.is_some())
            .finish()
    }
}

impl SessionState {
    /// Fresh ticket keys and an empty cache for `cfg`'s `session` and `early_data`.
    ///
    /// # Errors
    /// A `session` or `early_data` setting refused (a cache above
    /// [`crate::config::MAX_SESSION_CACHE_ENTRIES`], say), or the ticket key could
    /// not be generated.
    pub fn new(cfg: &TerminationConfig) -> Result<Self, ConfigBuildError> {
        cfg.validate_sessions()?;
        Self::from_validated(cfg)
    }

    pub(crate) fn from_validated(cfg: &TerminationConfig) -> Result<Self, ConfigBuildError> {
        let early_data = cfg.early_data.is_some();
        // Early data only with single-use, server-side session state: stateless
        // tickets could be replayed, and rustls refuses 0-RTT with them.
        let ticketer = if cfg.session.tickets && !early_data {
            Some(ticketer(cfg.session.ticket_key_rotation)?)
        } else {
            None
        };
        let cache = (cfg.session.cache || early_data).then(|| {
            let entries = usize::try_from(cfg.session.cache_entries.get()).unwrap_or(1);
            ServerSessionMemoryCache::new(entries) as Arc<dyn StoresServerSessions>
        });
        Ok(Self { ticketer, cache })
    }
}

/// A ticketer whose keys rotate every `rotation` (tickets stay valid for twice that).
fn ticketer(rotation: std::time::Duration) -> Result<Arc<dyn ProducesTickets>, ConfigBuildError> {
    fn generator() -> Result<Box<dyn ProducesTickets>, rustls::crypto::GetRandomFailed> {
        // ring's ticketer with fresh random keys; the outer rotator retires it.
        rustls::crypto::ring::Ticketer::new()
            .map(|t| Box::new(Shared(t)) as Box<dyn ProducesTickets>)
            .map_err(|_| rustls::crypto::GetRandomFailed)
    }
    let secs = u32::try_from(rotation.as_secs().max(1)).unwrap_or(u32::MAX);
    rustls::ticketer::TicketRotator::new(secs, generator)
        .map(|t| Arc::new(t) as Arc<dyn ProducesTickets>)
        .map_err(|source| ConfigBuildError::Rustls {
            field: "session.ticket_key_rotation".into(),
            source,
        })
}

/// Adapts an `Arc<dyn ProducesTickets>` to a boxed one.
#[derive(Debug)]
struct Shared(Arc<dyn ProducesTickets>);

impl ProducesTickets for Shared {
    fn enabled(&self) -> bool {
        self.0.enabled()
    }
    fn lifetime(&self) -> u32 {
        self.0.lifetime()
    }
    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.0.encrypt(plain)
    }
    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.0.decrypt(cipher)
    }
}
