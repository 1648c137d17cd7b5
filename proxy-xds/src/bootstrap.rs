//! A binary's xDS client from its config file's `xds` section, assembled: its TLS
//! paths resolved from the file's directory, SDS secrets into the store proxy-tls's
//! layers read (listeners and clusters naming `secret:` rotate to them), and its
//! state on the admin endpoint (`/stats/prometheus`, `/config_dump/xds`).

use std::sync::{Arc, Mutex, PoisonError};

use proxy_core::{config::Config, ConfigError, Server};
use proxy_tls::{rotation::MemorySecrets, TlsRuntime};

use crate::{TlsSecrets, XdsAdmin, XdsClient, XdsConfig, XdsThread};

/// An xDS client and the secret store its SDS fills, built from a config's `xds`
/// section; started once the server runs, and again (a client of its own, from
/// scratch, into the same secret store) for a server started again after a hot
/// upgrade's roll-back: [`spawn`](Self::spawn) takes `&self`. The admin pages
/// [`install`](Self::install) adds, on every server it was given, follow the
/// client started last. Clones share all of it: give one to the closure that
/// builds the server of a roll-back, so that server gets the admin pages too.
///
/// ```no_run
/// use proxy_core::{config::Config, Registry, Server};
/// use proxy_xds::Bootstrap;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::load(std::path::Path::new("proxy.yaml"))?;
/// let Some(xds) = Bootstrap::from_config(&config)? else {
///     return Ok(()); // no `xds` section: the file is the whole config
/// };
/// let mut registry = Registry::default();
/// // `secret: NAME` in a `tls` filter resolves in what SDS sent.
/// proxy_tls::register_with(&mut registry, xds.tls_runtime());
/// let server = xds.install(Server::new(xds.initial_config(), registry)?);
/// let handle = server.clone();
/// server.run_until(async move {
///     let _xds = xds.spawn(handle.clone()); // stops when dropped
///     handle.wait_for_signals().await;
/// })?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Bootstrap(Arc<Shared>);

/// What the clones of a [`Bootstrap`] share.
struct Shared {
    /// The first client, until its first start.
    first: Mutex<Option<XdsClient>>,
    /// The section and the static config, for the clients started after it.
    section: XdsConfig,
    base: Config,
    initial: Config,
    /// Follows the client started last.
    admin: XdsAdmin,
    secrets: Arc<MemorySecrets>,
}

impl std::fmt::Debug for Bootstrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bootstrap").finish_non_exhaustive()
    }
}

impl Bootstrap {
    /// The client of `config`'s `xds` section, or `None` without one (errors name
    /// `xds.FIELD`); what it receives is added to `config`, the static part.
    ///
    /// # Errors
    /// The section does not parse or validate ([`XdsConfig::from_config`]).
    ///
    /// ```
    /// let config = proxy_core::config::Config::from_yaml(
    ///     "listeners: [{name: l, address: 127.0.0.1:0, virtual_hosts: []}]\nxds: {servers: [\"127.0.0.1:18000\"], node: {id: n1}}",
    /// )?;
    /// assert!(proxy_xds::Bootstrap::from_config(&config)?.is_some());
    /// # Ok::<(), proxy_core::ConfigError>(())
    /// ```
    pub fn from_config(config: &Config) -> Result<Option<Self>, ConfigError> {
        let Some(xds) = XdsConfig::from_config(config).map_err(|e| e.within("xds"))? else {
            return Ok(None);
        };
        let secrets = Arc::new(MemorySecrets::default());
        let client = client(xds.clone(), config.clone(), &secrets);
        Ok(Some(Self(Arc::new(Shared {
            initial: client.initial_config(),
            admin: XdsAdmin::new(&client),
            first: Mutex::new(Some(client)),
            section: xds,
            base: config.clone(),
            secrets,
        }))))
    }

    /// The TLS runtime whose `secret:` references resolve in what SDS sent: give it
    /// to `proxy_tls::register_with`.
    pub fn tls_runtime(&self) -> TlsRuntime {
        TlsRuntime::with_secrets(self.0.secrets.clone())
    }

    /// The config to start with: routes may name clusters only the control plane
    /// defines, empty (503) until then.
    pub fn initial_config(&self) -> Config {
        self.0.initial.clone()
    }

    /// Adds the client's metrics and config dump to `server`'s admin endpoint
    /// ([`XdsAdmin`]): the first client's until a later one starts, then the one
    /// started last (the client a server taken back after a roll-back runs).
    pub fn install(&self, server: Server) -> Server {
        self.0.admin.clone().install(server)
    }

    /// Starts a client against `server` (call it once the server runs); it stops
    /// when the returned thread handle drops ([`XdsClient::spawn`]). The first call
    /// starts the first client; each later one (a server started again after a
    /// roll-back) a new client of the same section and secret store, subscribing
    /// from scratch. The admin pages [`install`](Self::install) added follow the
    /// client started last.
    ///
    /// # Errors
    /// When the client's runtime or thread cannot be created.
    pub fn spawn(&self, server: Server) -> std::io::Result<XdsThread> {
        self.client().spawn(server)
    }

    /// The client itself: the first one if not started yet, else a new one.
    pub fn into_client(self) -> XdsClient {
        self.client()
    }

    /// The first client if not started yet, else a new one, which the admin pages
    /// follow from now on.
    fn client(&self) -> XdsClient {
        let shared = &self.0;
        let first = shared
            .first
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        first.unwrap_or_else(|| {
            let again = client(shared.section.clone(), shared.base.clone(), &shared.secrets);
            shared.admin.follow(&again);
            again
        })
    }
}

/// A client of `section` adding to `base`, its SDS secrets into `secrets`.
fn client(section: XdsConfig, base: Config, secrets: &Arc<MemorySecrets>) -> XdsClient {
    XdsClient::new(section, base).with_secrets(Arc::new(TlsSecrets::new(secrets.clone())))
}
