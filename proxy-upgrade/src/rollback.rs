//! Rolling back after `ready`: when the new process dies within the hand-off window,
//! the old one takes its listening sockets back (it kept duplicates of what it sent)
//! and becomes its own successor: a server it starts on those sockets accepts again
//! and adopts every connection the old server still hands out, as the new process
//! would have.

use std::{os::fd::OwnedFd, sync::Arc};

use proxy_core::{metrics::CarriedValue, HandedOffConnection, Server};

/// What the old process runs when its successor dies after it said ready: given the
/// listening sockets (by listener name, the admin listener as
/// [`Server::ADMIN_LISTENER`]), start a server accepting on them
/// ([`Server::with_inherited_listeners`]) and return it once it runs, or `None` when
/// it cannot (the sockets are closed then, and the old process drains as before).
///
/// ```no_run
/// use proxy_core::{config::Config, Registry, Server};
/// use proxy_upgrade::UpgradeServer;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::load(std::path::Path::new("proxy.yaml"))?;
/// let server = Server::new(config.clone(), Registry::default())?;
/// let upgrades = UpgradeServer::bind("/run/proxy/upgrade.sock")?.on_rollback(move |sockets| {
///     let again = Server::new(config.clone(), Registry::default()).ok()?.with_inherited_listeners(sockets);
///     let running = again.clone();
///     std::thread::spawn(move || running.run());
///     // ... wait until it runs (its listeners are listed), then:
///     Some(again)
/// });
/// let _upgrades = upgrades.spawn(server.clone())?;
/// server.run()?;
/// # Ok(()) }
/// ```
pub type TakeBack = dyn Fn(Vec<(String, OwnedFd)>) -> Option<Server> + Send + Sync;

/// The listening sockets kept for a roll-back, and what takes them back.
pub(crate) struct Fallback {
    pub(crate) sockets: Vec<(String, OwnedFd)>,
    pub(crate) take_back: Arc<TakeBack>,
}

impl std::fmt::Debug for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fallback")
            .field("sockets", &self.sockets.len())
            .finish_non_exhaustive()
    }
}

impl Fallback {
    /// Takes the sockets back: the server accepting on them, with `metrics` carried
    /// in (what the old server counted so far), or `None`.
    pub(crate) fn take_back(self, metrics: Vec<(String, CarriedValue)>) -> Option<Server> {
        let server = (self.take_back)(self.sockets)?;
        server.carry_metrics(metrics);
        Some(server)
    }
}

/// Serves `c`, a connection the old server handed out after its successor died, on
/// `server`; one it refuses is closed (logged). Returns whether it was adopted.
pub(crate) fn adopt(server: &Server, c: HandedOffConnection) -> bool {
    let listener = c.listener.clone();
    match server.adopt_handed_off(c) {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(%listener, error = %proxy_core::DisplayChain(&error), "closed a connection taken back");
            false
        }
    }
}
