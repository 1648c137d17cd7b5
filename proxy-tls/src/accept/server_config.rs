//! Building the listener's rustls `ServerConfig`s (international, and Guomi when
//! configured) from the material a validated config names.

use std::{path::PathBuf, sync::Arc};

use rustls::{
    crypto::CryptoProvider, server::WebPkiClientVerifier, ServerConfig, SupportedProtocolVersion,
};

use super::session::SessionState;
#[cfg(feature = "guomi")]
use crate::config::GuomiConfig;
use crate::{
    config::{
        CertificateConfig, ClientAuthConfig, ClientAuthMode, KeyPair, Roots, TerminationConfig,
        TlsVersion,
    },
    error::ConfigBuildError,
    material,
    rotation::SecretSource,
    sni::{CertStore, SniResolver},
};

/// Everything needed to (re)build the configs; the session state is shared across
/// rebuilds so resumption survives a rotation.
pub(crate) struct ServerSpec {
    pub(crate) certs: Vec<CertificateConfig>,
    client_auth: Option<ClientAuthConfig>,
    alpn: Vec<Vec<u8>>,
    versions: Vec<&'static SupportedProtocolVersion>,
    sessions: SessionState,
    early_data_max: u32,
    #[cfg(feature = "guomi")]
    guomi: Option<GuomiConfig>,
    provider: Arc<CryptoProvider>,
    secrets: Arc<dyn SecretSource>,
}

impl std::fmt::Debug for ServerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSpec")
            .field("certs", &self.certs)
            .field("alpn", &self.alpn)
            .finish_non_exhaustive()
    }
}

/// The configs one generation of material produced.
#[derive(Debug)]
pub(crate) struct ServerConfigs {
    pub(crate) international: Arc<ServerConfig>,
    #[cfg(feature = "guomi")]
    pub(crate) guomi: Option<Arc<ServerConfig>>,
}

impl ServerConfigs {
    /// The config for a client: the Guomi one when configured and the client offers
    /// an RFC 8998 suite (`true`), the international one otherwise.
    pub(crate) fn pick(
        &self,
        hello: &rustls::server::ClientHello<'_>,
    ) -> (Arc<ServerConfig>, bool) {
        #[cfg(feature = "guomi")]
        if let Some(g) = self
            .guomi
            .as_ref()
            .filter(|_| crate::guomi::offers_guomi(hello))
        {
            return (g.clone(), true);
        }
        #[cfg(not(feature = "guomi"))]
        let _ = hello;
        (self.international.clone(), false)
    }
}

/// The rustls versions of a validated (non-empty) list, TLS 1.3 first.
pub(crate) fn versions(v: &[TlsVersion]) -> Vec<&'static SupportedProtocolVersion> {
    let mut out = Vec::new();
    if v.contains(&TlsVersion::Tls13) {
        out.push(&rustls::version::TLS13);
    }
    if v.contains(&TlsVersion::Tls12) {
        out.push(&rustls::version::TLS12);
    }
    out
}

impl ServerSpec {
    /// A spec of a validated config (the material is loaded by [`ServerSpec::build`]).
    pub(crate) fn new(
        cfg: &TerminationConfig,
        secrets: Arc<dyn SecretSource>,
        sessions: SessionState,
    ) -> Self {
        Self {
            certs: cfg.certificates.clone(),
            client_auth: cfg.client_auth.clone(),
            alpn: cfg.alpn.iter().map(|p| p.as_bytes().to_vec()).collect(),
            versions: versions(&cfg.versions),
            sessions,
            early_data_max: cfg
                .early_data
                .as_ref()
                .map_or(0, |e| u32::try_from(e.max_bytes.get()).unwrap_or(u32::MAX)),
            #[cfg(feature = "guomi")]
            guomi: cfg.guomi.clone(),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            secrets,
        }
    }

    fn roots(&self) -> impl Iterator<Item = &Roots> {
        let client = self.client_auth.as_ref().map(|ca| &ca.roots);
        #[cfg(feature = "guomi")]
        let guomi = self.guomi.as_ref().and_then(|g| g.client_roots.as_ref());
        #[cfg(not(feature = "guomi"))]
        let guomi = None;
        client.into_iter().chain(guomi)
    }

    /// The files whose changes trigger a rebuild.
    pub(crate) fn files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for c in &self.certs {
            if let KeyPair::Files { cert, key } = &c.key_pair {
                files.push(cert.clone());
                files.push(key.clone());
            }
        }
        for roots in self.roots() {
            if let Roots::Files(f) = roots {
                files.extend(f.iter().cloned());
            }
        }
        #[cfg(feature = "guomi")]
        if let Some(g) = &self.guomi {
            files.push(g.cert.clone());
            files.push(g.key.clone());
        }
        files
    }

    /// Whether any material comes from the secret source.
    pub(crate) fn uses_secrets(&self) -> bool {
        self.certs
            .iter()
            .any(|c| matches!(c.key_pair, KeyPair::Secret(_)))
            || self.roots().any(|r| matches!(r, Roots::Secret(_)))
    }

    /// Loads and validates all material and builds the configs.
    pub(crate) fn build(&self) -> Result<ServerConfigs, ConfigBuildError> {
        let mut store = CertStore::default();
        for (i, c) in self.certs.iter().enumerate() {
            let field = format!("certificates[{i}]");
            let ck = material::load_key_pair(&c.key_pair, &field, &*self.secrets, &self.provider)?;
            let ck = Arc::new(ck);
            let names = if c.server_names.is_empty() {
                material::dns_names(&ck.cert[0])
            } else {
                c.server_names.clone()
            };
            store.add(&names, ck, c.default);
        }
        let builder = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&self.versions)
            .map_err(|source| ConfigBuildError::Rustls {
                field: "versions".into(),
                source,
            })?;
        let builder = match &self.client_auth {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let roots = material::load_roots(&ca.roots, "client_auth.roots", &*self.secrets)?;
                let v = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    self.provider.clone(),
                );
                let v = match ca.mode {
                    ClientAuthMode::Required => v,
                    ClientAuthMode::Optional => v.allow_unauthenticated(),
                };
                let v = v.build().map_err(|source| ConfigBuildError::Verifier {
                    field: "client_auth.roots".into(),
                    source,
                })?;
                builder.with_client_cert_verifier(v)
            }
        };
        let mut config = builder.with_cert_resolver(Arc::new(SniResolver(Arc::new(store))));
        config.alpn_protocols = self.alpn.clone();
        config.ignore_client_order = false;
        match &self.sessions.ticketer {
            Some(t) => config.ticketer = t.clone(),
            None => config.send_tls13_tickets = if self.sessions.cache.is_some() { 2 } else { 0 },
        }
        config.session_storage = match &self.sessions.cache {
            Some(c) => c.clone(),
            None => Arc::new(rustls::server::NoServerSessionStorage {}),
        };
        config.max_early_data_size = self.early_data_max;
        // Lets a hot upgrade hand idle TLS 1.3 sessions over (`continued::extract`);
        // costs nothing per record: rustls keeps the same keys either way.
        config.enable_secret_extraction = true;
        Ok(ServerConfigs {
            international: Arc::new(config),
            #[cfg(feature = "guomi")]
            guomi: match &self.guomi {
                None => None,
                Some(g) => Some(Arc::new(self.build_guomi(g)?)),
            },
        })
    }

    #[cfg(feature = "guomi")]
    fn build_guomi(&self, g: &GuomiConfig) -> Result<ServerConfig, ConfigBuildError> {
        use crate::guomi::{load_sm2_key, GuomiServerBuilder};
        let at = |field: &str| {
            let field = field.to_owned();
            move |source| ConfigBuildError::Guomi { field, source }
        };
        let material_at = |field: &'static str| move |e| ConfigBuildError::material(field, e);
        let cert_name = g.cert.display().to_string();
        let chain = material::read_file(&g.cert)
            .and_then(|pem| material::parse_certs(&pem, &cert_name))
            .map_err(material_at("guomi.cert"))?;
        material::check_validity(&chain[0], &cert_name, material::unix_now())
            .map_err(material_at("guomi.cert"))?;
        let key_name = g.key.display().to_string();
        let key = material::read_file(&g.key)
            .and_then(|pem| material::parse_key(&pem, &key_name))
            .map_err(material_at("guomi.key"))?;
        let key = load_sm2_key(&key).map_err(at("guomi.key"))?;
        let mut builder = GuomiServerBuilder::new(chain, key)
            .map_err(at("guomi.key"))?
            .alpn(self.alpn.clone());
        if let Some(roots) = &g.client_roots {
            let store = material::load_sm2_roots(roots, "guomi.client_roots", &*self.secrets)?;
            let mandatory = matches!(
                self.client_auth,
                Some(ClientAuthConfig {
                    mode: ClientAuthMode::Required,
                    ..
                })
            );
            builder = builder.client_auth(Arc::new(store), mandatory);
        }
        builder.build().map_err(at("guomi"))
    }
}

#[cfg(all(test, feature = "guomi"))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::{
        guomi::test_pki::{issue, Spec, SERVER_AUTH},
        rotation::MemorySecrets,
    };

    #[test]
    fn expired_guomi_client_roots_are_refused_naming_the_field_and_file() {
        let dir = std::env::temp_dir().join(format!("proxy-tls-gm-roots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, data: &str| {
            let p = dir.join(name);
            std::fs::write(&p, data).unwrap();
            p
        };
        let rsa = rcgen::generate_simple_self_signed(vec!["a.test".to_owned()]).unwrap();
        let cert = write("intl.pem", &rsa.cert.pem());
        let key = write("intl.key", &rsa.key_pair.serialize_pem());
        let ca = issue(&Spec::ca("gm ca"), None);
        let leaf = issue(&Spec::leaf("a.test", &["a.test"], SERVER_AUTH), Some(&ca));
        let gm_cert = write("gm.pem", &leaf.cert_pem());
        let gm_key = write("gm.key", &leaf.key_pem());
        let mut old = Spec::ca("old gm ca");
        old.not_before = SystemTime::now() - Duration::from_secs(3 * 86_400);
        old.not_after = SystemTime::now() - Duration::from_secs(86_400);
        let old_roots = write("old-roots.pem", &issue(&old, None).cert_pem());
        let good_roots = write("roots.pem", &ca.cert_pem());
        let build = |roots: &std::path::Path| {
            let mut cfg = TerminationConfig::new(vec![CertificateConfig::files(&cert, &key)]);
            cfg.client_auth = Some(ClientAuthConfig::required(Roots::files([&cert])));
            cfg.guomi = Some(GuomiConfig {
                cert: gm_cert.clone(),
                key: gm_key.clone(),
                client_roots: Some(Roots::files([&good_roots, &roots.to_path_buf()])),
            });
            cfg.validate().unwrap();
            let sessions = SessionState::new(&cfg).unwrap();
            ServerSpec::new(&cfg, Arc::new(MemorySecrets::default()), sessions)
                .build()
                .map(|_| ())
                .map_err(|e| crate::error_chain(&e))
        };
        assert_eq!(build(&good_roots), Ok(()));
        let err = build(&old_roots).unwrap_err();
        assert!(
            err.starts_with(&format!(
                "guomi.client_roots.files[1]: {}: certificate 0 (a root) expired at",
                old_roots.display()
            )),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
