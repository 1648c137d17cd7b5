//! What serde cannot check, checked once when a layer or transport is built. Every
//! error names its field path inside the section.

use std::time::Duration;

use super::{
    EarlyDataConfig, GuomiConfig, GuomiOriginationConfig, GuomiSuites, OffloadConfig,
    OriginationConfig, Roots, RotationConfig, SessionConfig, TerminationConfig, TlsVersion,
};
use crate::error::ConfigBuildError;

/// The most entries of a session cache (rustls allocates the whole cache up front,
/// so a huge value would exhaust memory at load).
pub const MAX_SESSION_CACHE_ENTRIES: u32 = 1_000_000;
/// The most early data (0-RTT) a connection may send, buffered whole before the
/// handshake completes.
pub const MAX_EARLY_DATA_BYTES: u64 = 1024 * 1024;
/// The most threads one software offload engine may start.
pub const MAX_ENGINE_THREADS: u32 = 256;

type Result<T = ()> = std::result::Result<T, ConfigBuildError>;

impl TerminationConfig {
    /// Checks the values serde cannot: at least one certificate, ALPN names, versions,
    /// timeouts, the session cache and early data sizes, roots, offload engines, the
    /// Guomi section, and that sections needing a cargo feature left out of this
    /// build are absent.
    ///
    /// # Errors
    /// The first problem, naming its field ([`ConfigBuildError::field`]).
    pub fn validate(&self) -> Result {
        if self.certificates.is_empty() {
            return Err(ConfigBuildError::invalid(
                "certificates",
                "at least one certificate is required",
            ));
        }
        let mut default = None;
        for (i, c) in self.certificates.iter().enumerate() {
            if c.default {
                if let Some(first) = default {
                    return Err(ConfigBuildError::invalid(
                        format!("certificates[{i}].default"),
                        format!(
                            "certificates[{first}] is already the default; \
                             at most one certificate may be marked default"
                        ),
                    ));
                }
                default = Some(i);
            }
            for (j, name) in c.server_names.iter().enumerate() {
                if name.trim_end_matches('.').is_empty() || name.contains(char::is_whitespace) {
                    return Err(ConfigBuildError::invalid(
                        format!("certificates[{i}].server_names[{j}]"),
                        format!("{name:?} is not a server name"),
                    ));
                }
            }
        }
        if let Some(ca) = &self.client_auth {
            check_roots(&ca.roots, "client_auth.roots")?;
        }
        check_alpn(&self.alpn)?;
        check_versions(&self.versions)?;
        check_nonzero(self.handshake_timeout, "handshake_timeout")?;
        self.validate_sessions()?;
        check_rotation(&self.rotation)?;
        if let Some(o) = &self.offload {
            o.validate()?;
        }
        if let Some(g) = &self.guomi {
            check_guomi(g, self.client_auth.is_some())?;
        }
        Ok(())
    }

    /// The checks resumption state depends on: `session` and `early_data`.
    pub(crate) fn validate_sessions(&self) -> Result {
        let SessionConfig {
            ticket_key_rotation,
            cache_entries,
            ..
        } = &self.session;
        check_nonzero(*ticket_key_rotation, "session.ticket_key_rotation")?;
        if cache_entries.get() > MAX_SESSION_CACHE_ENTRIES {
            return Err(ConfigBuildError::invalid(
                "session.cache_entries",
                format!("{cache_entries} is above {MAX_SESSION_CACHE_ENTRIES}"),
            ));
        }
        if let Some(EarlyDataConfig { max_bytes }) = &self.early_data {
            if max_bytes.get() == 0 {
                return Err(ConfigBuildError::invalid(
                    "early_data.max_bytes",
                    "must be above zero (leave early_data out to refuse early data)",
                ));
            }
            if max_bytes.get() > MAX_EARLY_DATA_BYTES {
                return Err(ConfigBuildError::invalid(
                    "early_data.max_bytes",
                    format!(
                        "{max_bytes} is above {MAX_EARLY_DATA_BYTES} (early data is buffered whole)"
                    ),
                ));
            }
            if !self.versions.contains(&TlsVersion::Tls13) {
                return Err(ConfigBuildError::invalid(
                    "early_data",
                    "early data needs tls13 in versions",
                ));
            }
        }
        Ok(())
    }
}

impl OriginationConfig {
    /// Checks the values serde cannot: the server name, roots, ALPN names, versions,
    /// timeouts, and the Guomi section (the `guomi` cargo feature, SM2 roots from files
    /// or a secret, `verify` on, `tls13` among the versions).
    ///
    /// # Errors
    /// The first problem, naming its field ([`ConfigBuildError::field`]).
    pub fn validate(&self) -> Result {
        if let Some(n) = &self.server_name {
            if rustls::pki_types::ServerName::try_from(n.as_str()).is_err() {
                return Err(ConfigBuildError::invalid(
                    "server_name",
                    format!("{n:?} is not a DNS name or IP address"),
                ));
            }
        }
        check_roots(&self.roots, "roots")?;
        check_alpn(&self.alpn)?;
        check_versions(&self.versions)?;
        check_nonzero(self.handshake_timeout, "handshake_timeout")?;
        check_rotation(&self.rotation)?;
        if let Some(g) = &self.guomi {
            self.check_guomi(g)?;
        }
        if !self.subject_alt_names.is_empty() {
            if !self.verify {
                return Err(ConfigBuildError::invalid(
                    "subject_alt_names",
                    "needs verify: true (an unverified certificate proves no name)",
                ));
            }
            if self.guomi.is_some() {
                return Err(ConfigBuildError::invalid(
                    "subject_alt_names",
                    "not supported with guomi",
                ));
            }
        }
        Ok(())
    }

    fn check_guomi(&self, g: &GuomiOriginationConfig) -> Result {
        if !cfg!(feature = "guomi") {
            return Err(ConfigBuildError::FeatureDisabled {
                field: "guomi".into(),
                feature: "guomi",
            });
        }
        match &g.roots {
            Roots::System | Roots::Webpki => {
                return Err(ConfigBuildError::invalid(
                    "guomi.roots",
                    "SM2 roots come from files or a secret (system and webpki hold no SM2 roots)",
                ))
            }
            r => check_roots(r, "guomi.roots")?,
        }
        if !self.verify {
            return Err(ConfigBuildError::invalid(
                "verify",
                "false cannot be combined with guomi (SM2 server chains are always verified)",
            ));
        }
        if !self.versions.contains(&TlsVersion::Tls13) {
            return Err(ConfigBuildError::invalid(
                "versions",
                "guomi needs tls13 (RFC 8998 defines its suites for TLS 1.3 only)",
            ));
        }
        if g.suites == GuomiSuites::Only && self.client_cert.is_some() {
            return Err(ConfigBuildError::invalid(
                "client_cert",
                "unused with guomi.suites: only (the SM2 client certificate is guomi.client_cert)",
            ));
        }
        Ok(())
    }
}

fn check_roots(roots: &Roots, field: &str) -> Result {
    match roots {
        Roots::Files(files) if files.is_empty() => Err(ConfigBuildError::invalid(
            format!("{field}.files"),
            "at least one file is required",
        )),
        Roots::Secret(name) if name.is_empty() => Err(ConfigBuildError::invalid(
            format!("{field}.secret"),
            "the secret name must not be empty",
        )),
        _ => Ok(()),
    }
}

/// ALPN protocol names: 1 to 255 bytes each (RFC 7301).
fn check_alpn(alpn: &[String]) -> Result {
    for (i, p) in alpn.iter().enumerate() {
        if p.is_empty() || p.len() > 255 {
            return Err(ConfigBuildError::invalid(
                format!("alpn[{i}]"),
                format!("{p:?} must be 1 to 255 bytes long"),
            ));
        }
    }
    Ok(())
}

fn check_versions(v: &[TlsVersion]) -> Result {
    if v.is_empty() {
        return Err(ConfigBuildError::invalid(
            "versions",
            "at least one version is required (tls12, tls13)",
        ));
    }
    Ok(())
}

fn check_nonzero(d: Duration, field: &str) -> Result {
    if d.is_zero() {
        return Err(ConfigBuildError::invalid(field, "must be above zero"));
    }
    Ok(())
}

fn check_rotation(r: &RotationConfig) -> Result {
    if r.watch_files {
        check_nonzero(r.poll_interval, "rotation.poll_interval").map_err(|_| {
            ConfigBuildError::invalid(
                "rotation.poll_interval",
                "must be above zero (set watch_files: false to stop watching the files)",
            )
        })?;
    }
    Ok(())
}

impl OffloadConfig {
    /// Checks the engines: at least one, named, at most [`MAX_ENGINE_THREADS`]
    /// threads each, nice values 1 to 19; and that this build has the `offload` cargo feature.
    ///
    /// # Errors
    /// The first problem, naming its field as in the termination section
    /// (`offload.engines[1].threads`).
    pub fn validate(&self) -> Result {
        check_offload(self)
    }
}

fn check_offload(o: &OffloadConfig) -> Result {
    if !cfg!(feature = "offload") {
        return Err(ConfigBuildError::FeatureDisabled {
            field: "offload".into(),
            feature: "offload",
        });
    }
    if o.engines.is_empty() {
        return Err(ConfigBuildError::invalid(
            "offload.engines",
            "at least one engine is required",
        ));
    }
    for (i, e) in o.engines.iter().enumerate() {
        if e.name.is_empty() {
            return Err(ConfigBuildError::invalid(
                format!("offload.engines[{i}].name"),
                "must not be empty",
            ));
        }
        if e.threads.get() > MAX_ENGINE_THREADS {
            return Err(ConfigBuildError::invalid(
                format!("offload.engines[{i}].threads"),
                format!("{} is above {MAX_ENGINE_THREADS}", e.threads),
            ));
        }
        if let Err(reason) = e.thread_priority.check() {
            return Err(ConfigBuildError::invalid(
                format!("offload.engines[{i}].thread_priority.nice"),
                reason,
            ));
        }
    }
    Ok(())
}

fn check_guomi(g: &GuomiConfig, client_auth: bool) -> Result {
    if !cfg!(feature = "guomi") {
        return Err(ConfigBuildError::FeatureDisabled {
            field: "guomi".into(),
            feature: "guomi",
        });
    }
    match &g.client_roots {
        None if client_auth => Err(ConfigBuildError::invalid(
            "guomi.client_roots",
            "required when client_auth is set (SM2 roots for Guomi clients)",
        )),
        Some(Roots::System | Roots::Webpki) => Err(ConfigBuildError::invalid(
            "guomi.client_roots",
            "SM2 roots come from files or a secret (system and webpki hold no SM2 roots)",
        )),
        Some(r) => check_roots(r, "guomi.client_roots"),
        None => Ok(()),
    }
}
