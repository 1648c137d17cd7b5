//! The sidecar's xDS client, from the config file's `xds` section: its TLS paths
//! resolved from the file's directory, SDS secrets into the store the TLS layer
//! reads (listeners and clusters naming `secret:` rotate to them), and its state on
//! the admin endpoint (`/stats/prometheus`, `/config_dump/xds`).

use std::sync::Arc;

use proxy_core::{config::Config, ConfigError, Server};
use proxy_tls::{rotation::MemorySecrets, TlsRuntime};
use proxy_xds::{TlsSecrets, XdsAdmin, XdsClient, XdsConfig};

/// An xDS client and the secret store it fills.
pub(crate) struct Xds {
    client: XdsClient,
    secrets: Arc<MemorySecrets>,
}

impl Xds {
    /// The client of `config`'s `xds` section, if any (errors name `xds.FIELD`);
    /// what it receives is added to `config`, the static part.
    pub(crate) fn from_config(config: &Config) -> Result<Option<Self>, ConfigError> {
        let Some(xds) = XdsConfig::from_config(config).map_err(|e| e.within("xds"))? else {
            return Ok(None);
        };
        let secrets = Arc::new(MemorySecrets::default());
        let client = XdsClient::new(xds, config.clone())
            .with_secrets(Arc::new(TlsSecrets::new(secrets.clone())));
        Ok(Some(Self { client, secrets }))
    }

    /// The TLS runtime whose `secret:` references resolve in what SDS sent.
    pub(crate) fn tls_runtime(&self) -> TlsRuntime {
        TlsRuntime::with_secrets(self.secrets.clone())
    }

    /// The config to start with: routes may name clusters only the control plane
    /// defines, empty (503) until then.
    pub(crate) fn initial_config(&self) -> Config {
        self.client.initial_config()
    }

    /// Adds the client's metrics and config dump to `server`'s admin endpoint.
    pub(crate) fn install(&self, server: Server) -> Server {
        XdsAdmin::new(&self.client).install(server)
    }

    /// The client, to start once the server runs.
    pub(crate) fn into_client(self) -> XdsClient {
        self.client
    }
}
