//! Building the listener's rustls `ServerConfig`s (international, and Guomi when
//! configured) from validated material.

use std::{path::PathBuf, sync::Arc};

use rustls::{
    crypto::CryptoProvider,
    server::{
        ProducesTickets, ServerSessionMemoryCache, StoresServerSessions, WebPkiClientVerifier,
    },
    ServerConfig, SupportedProtocolVersion,
};

use crate::{
    config::{ClientAuthMode, GuomiConfig, TerminationConfig, TlsVersion},
    error::ConfigBuildError,
    material::{self, KeyPairSource, RootsSource},
    rotation::SecretSource,
    sni::{CertStore, SniResolver},
};

/// One listener certificate: where it comes from and which names it serves.
#[derive(Debug, Clone)]
pub(crate) struct CertEntry {
    pub(crate) source: KeyPairSource,
    pub(crate) server_names: Vec<String>,
    pub(crate) default: bool,
}

/// Everything needed to (re)build the configs; the session state is shared across
/// rebuilds so resumption survives a rotation.
pub(crate) struct ServerSpec {
    pub(crate) certs: Vec<CertEntry>,
    pub(crate) client_auth: Option<(RootsSource, ClientAuthMode)>,
    pub(crate) alpn: Vec<Vec<u8>>,
    pub(crate) versions: Vec<&'static SupportedProtocolVersion>,
    pub(crate) sessions: SessionState,
    pub(crate) early_data_max: u32,
    pub(crate) guomi: Option<GuomiConfig>,
    pub(crate) provider: Arc<CryptoProvider>,
    pub(crate) secrets: Arc<dyn SecretSource>,
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
    pub(crate) guomi: Option<Arc<ServerConfig>>,
}

pub(crate) fn versions(v: &[TlsVersion]) -> Vec<&'static SupportedProtocolVersion> {
    if v.is_empty() {
        return vec![&rustls::version::TLS13, &rustls::version::TLS12];
    }
    let mut out = Vec::new();
    if v.contains(&TlsVersion::Tls13) {
        out.push(&rustls::version::TLS13);
    }
    if v.contains(&TlsVersion::Tls12) {
        out.push(&rustls::version::TLS12);
    }
    out
}

/// A listener's resumption state: the ticket keys and the stateful session cache.
/// Kept across material rotations, and across config reloads when the `session` and
/// `early_data` sections are unchanged ([`crate::TlsRuntime`] keeps it by listener).
#[derive(Clone)]
pub struct SessionState {
    ticketer: Option<Arc<dyn ProducesTickets>>,
    cache: Option<Arc<dyn StoresServerSessions>>,
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
    /// A setting refused by [`TerminationConfig::validate`] (a session cache above
    /// [`crate::config::MAX_SESSION_CACHE`]), or the ticket key could not be generated.
    pub fn new(cfg: &TerminationConfig) -> Result<Self, ConfigBuildError> {
        cfg.validate()?;
        // Early data only with single-use, server-side session state: stateless
        // tickets could be replayed, and rustls refuses 0-RTT with them.
        let use_tickets = cfg.session.tickets && !cfg.early_data.enabled;
        let ticketer = if use_tickets {
            Some(ticketer(cfg.session.ticket_key_rotation)?)
        } else {
            None
        };
        let cache_size = if cfg.early_data.enabled {
            cfg.session.cache_size.max(1)
        } else {
            cfg.session.cache_size
        };
        let cache = (cache_size > 0)
            .then(|| ServerSessionMemoryCache::new(cache_size) as Arc<dyn StoresServerSessions>);
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
            what: "session: creating the ticket key".into(),
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

impl ServerSpec {
    /// Validates the config section (not the material) into a spec.
    pub(crate) fn from_config(
        cfg: &TerminationConfig,
        secrets: Arc<dyn SecretSource>,
        sessions: SessionState,
    ) -> Result<Self, ConfigBuildError> {
        cfg.validate()?;
        if cfg.certificates.is_empty() {
            return Err(ConfigBuildError::Invalid(
                "certificates: at least one certificate is required".into(),
            ));
        }
        let mut certs = Vec::new();
        for (i, c) in cfg.certificates.iter().enumerate() {
            let source = certificate_source(c, &format!("certificates[{i}]"))?;
            certs.push(CertEntry {
                source,
                server_names: c.server_names.clone(),
                default: c.default,
            });
        }
        let client_auth = match &cfg.client_auth {
            None => None,
            Some(ca) => {
                let src = match (&ca.roots, &ca.roots_secret) {
                    (Some(p), None) => RootsSource::File(p.clone()),
                    (None, Some(s)) => RootsSource::Secret(s.clone()),
                    _ => {
                        return Err(ConfigBuildError::Invalid(
                            "client_auth: exactly one of roots or roots_secret is required".into(),
                        ))
                    }
                };
                Some((src, ca.mode))
            }
        };
        if let Some(g) = &cfg.guomi {
            if cfg.client_auth.is_some() && g.client_roots.is_none() {
                return Err(ConfigBuildError::Invalid(
                    "guomi.client_roots: required when client_auth is set (SM2 roots for Guomi clients)".into(),
                ));
            }
        }
        let versions = versions(&cfg.versions);
        if cfg.early_data.enabled && !versions.contains(&&rustls::version::TLS13) {
            return Err(ConfigBuildError::Invalid(
                "early_data.enabled: early data needs tls13 in versions".into(),
            ));
        }
        Ok(Self {
            certs,
            client_auth,
            alpn: cfg.alpn.iter().map(|p| p.as_bytes().to_vec()).collect(),
            versions,
            sessions,
            early_data_max: if cfg.early_data.enabled {
                cfg.early_data.max_size
            } else {
                0
            },
            guomi: cfg.guomi.clone(),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            secrets,
        })
    }

    /// The files whose changes trigger a rebuild.
    pub(crate) fn files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for c in &self.certs {
            if let KeyPairSource::Files { cert, key } = &c.source {
                files.push(cert.clone());
                files.push(key.clone());
            }
        }
        if let Some((RootsSource::File(p), _)) = &self.client_auth {
            files.push(p.clone());
        }
        if let Some(g) = &self.guomi {
            files.push(g.cert.clone());
            files.push(g.key.clone());
            files.extend(g.client_roots.clone());
        }
        files
    }

    /// Whether any material comes from the secret source.
    pub(crate) fn uses_secrets(&self) -> bool {
        self.certs
            .iter()
            .any(|c| matches!(c.source, KeyPairSource::Secret(_)))
            || matches!(self.client_auth, Some((RootsSource::Secret(_), _)))
    }

    /// Loads and validates all material and builds the configs.
    pub(crate) fn build(&self) -> Result<ServerConfigs, ConfigBuildError> {
        let mut store = CertStore::default();
        for c in &self.certs {
            let ck = Arc::new(c.source.load(&*self.secrets, &self.provider)?);
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
                what: "versions".into(),
                source,
            })?;
        let builder = match &self.client_auth {
            None => builder.with_no_client_auth(),
            Some((roots, mode)) => {
                let roots = Arc::new(roots.load(&*self.secrets)?);
                let v = WebPkiClientVerifier::builder_with_provider(roots, self.provider.clone());
                let v = match mode {
                    ClientAuthMode::Required => v,
                    ClientAuthMode::Optional => v.allow_unauthenticated(),
                };
                let v = v.build().map_err(|source| ConfigBuildError::Verifier {
                    what: "client_auth".into(),
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
        let guomi = match &self.guomi {
            None => None,
            Some(g) => Some(Arc::new(self.build_guomi(g)?)),
        };
        Ok(ServerConfigs {
            international: Arc::new(config),
            guomi,
        })
    }

    fn build_guomi(&self, g: &GuomiConfig) -> Result<ServerConfig, ConfigBuildError> {
        let cert_name = g.cert.display().to_string();
        let chain = material::parse_certs(&material::read_file(&g.cert)?, &cert_name)?;
        material::check_validity(&chain[0], &cert_name, material::unix_now())?;
        material::read_file(&g.key)?;
        if let Some(roots) = &g.client_roots {
            let name = roots.display().to_string();
            let certs = material::parse_certs(&material::read_file(roots)?, &name)?;
            material::check_roots_validity(&certs, &name, material::unix_now())?;
        }
        let mandatory = matches!(self.client_auth, Some((_, ClientAuthMode::Required)));
        crate::guomi::GuomiServerBuilder::from_pem_files(&g.cert, &g.key)
            .and_then(|b| {
                let b = b.alpn(self.alpn.clone());
                match &g.client_roots {
                    Some(roots) => Ok(b.client_auth(
                        Arc::new(crate::guomi::Sm2RootStore::from_pem_file(roots)?),
                        mandatory,
                    )),
                    None => Ok(b),
                }
            })
            .and_then(crate::guomi::GuomiServerBuilder::build)
            .map_err(|source| ConfigBuildError::Guomi {
                what: format!("guomi: {} + {}", g.cert.display(), g.key.display()),
                source,
            })
    }
}

pub(crate) fn certificate_source(
    c: &crate::config::CertificateConfig,
    field: &str,
) -> Result<KeyPairSource, ConfigBuildError> {
    match (&c.cert, &c.key, &c.secret) {
        (Some(cert), Some(key), None) => Ok(KeyPairSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        }),
        (None, None, Some(s)) => Ok(KeyPairSource::Secret(s.clone())),
        _ => Err(ConfigBuildError::Invalid(format!(
            "{field}: give cert and key, or secret"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::{
        guomi::test_pki::{issue, Spec, SERVER_AUTH},
        rotation::MemorySecrets,
    };

    #[test]
    fn expired_guomi_client_roots_are_refused_naming_the_file() {
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
        let cfg = |roots: &std::path::Path| -> TerminationConfig {
            serde_yaml::from_str(&format!(
                "certificates: [{{cert: {}, key: {}}}]\nclient_auth: {{roots: {}}}\n\
                 guomi: {{cert: {}, key: {}, client_roots: {}}}",
                cert.display(),
                key.display(),
                cert.display(),
                gm_cert.display(),
                gm_key.display(),
                roots.display()
            ))
            .unwrap()
        };
        let build = |roots: &std::path::Path| {
            let cfg = cfg(roots);
            ServerSpec::from_config(
                &cfg,
                Arc::new(MemorySecrets::default()),
                SessionState::new(&cfg).unwrap(),
            )
            .unwrap()
            .build()
            .map(|_| ())
            .map_err(|e| crate::error_chain(&e))
        };
        assert_eq!(build(&good_roots), Ok(()));
        let err = build(&old_roots).unwrap_err();
        assert!(
            err.starts_with(&format!(
                "{}: certificate 0 (a root) expired at",
                old_roots.display()
            )),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
