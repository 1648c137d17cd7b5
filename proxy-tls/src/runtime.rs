//! What TLS layers and transports share across listeners and config reloads.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use crate::{
    accept::SessionState,
    config::{EarlyDataConfig, SessionConfig, TerminationConfig},
    error::ConfigBuildError,
    metrics::TlsMetrics,
    rotation::{MemorySecrets, SecretSource},
};
#[cfg(feature = "offload")]
use crate::{
    config::OffloadConfig,
    offload::{Dispatcher, OffloadEngine, OffloadMetrics, SoftwareEngine},
};

/// What the TLS layers and transports share across listeners and config reloads: the
/// secret source (an SDS client, say), the offload engines by name, the resumption
/// state of each listener, and the counters. Cheap to clone: clones share it all.
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use proxy_tls::{rotation::MemorySecrets, TlsRuntime};
///
/// let secrets = Arc::new(MemorySecrets::default());
/// let runtime = TlsRuntime::with_secrets(secrets);
/// assert_eq!(runtime.metrics().failures("timeout"), 0);
/// ```
#[derive(Debug, Clone)]
pub struct TlsRuntime {
    secrets: Arc<dyn SecretSource>,
    #[cfg(feature = "offload")]
    engines: Arc<Mutex<HashMap<String, Arc<dyn OffloadEngine>>>>,
    sessions: Arc<Mutex<HashMap<String, (SessionKey, SessionState)>>>,
    metrics: Arc<TlsMetrics>,
    #[cfg(feature = "offload")]
    offload_metrics: Arc<OffloadMetrics>,
}

/// What resumption state depends on: equal keys reuse the state across reloads.
type SessionKey = (SessionConfig, Option<EarlyDataConfig>);

impl Default for TlsRuntime {
    fn default() -> Self {
        Self::with_secrets(Arc::new(MemorySecrets::default()))
    }
}

impl TlsRuntime {
    /// A runtime whose `secret:` references resolve in `secrets` (an SDS client).
    pub fn with_secrets(secrets: Arc<dyn SecretSource>) -> Self {
        Self {
            secrets,
            #[cfg(feature = "offload")]
            engines: Arc::default(),
            sessions: Arc::default(),
            metrics: Arc::default(),
            #[cfg(feature = "offload")]
            offload_metrics: Arc::default(),
        }
    }

    /// The secret source.
    pub fn secrets(&self) -> &Arc<dyn SecretSource> {
        &self.secrets
    }

    /// The handshake and rotation counters.
    pub fn metrics(&self) -> &Arc<TlsMetrics> {
        &self.metrics
    }

    /// The resumption state of `listener`, kept while its `session` and `early_data`
    /// settings stay the same (so tickets stay valid across a config reload); fresh
    /// state without a listener name. `cfg` must be validated.
    pub(crate) fn sessions(
        &self,
        listener: Option<&str>,
        cfg: &TerminationConfig,
    ) -> Result<SessionState, ConfigBuildError> {
        let fresh = || SessionState::from_validated(cfg);
        let Some(listener) = listener else {
            return fresh();
        };
        let key = (cfg.session.clone(), cfg.early_data.clone());
        let Ok(mut known) = self.sessions.lock() else {
            return fresh();
        };
        if let Some((k, state)) = known.get(listener) {
            if *k == key {
                return Ok(state.clone());
            }
        }
        let state = fresh()?;
        known.insert(listener.to_owned(), (key, state.clone()));
        Ok(state)
    }
}

#[cfg(feature = "offload")]
impl TlsRuntime {
    /// Makes `engine` available to `offload.engines[].name` (a hardware engine, say);
    /// names not added here get a software engine on first use.
    pub fn add_engine(&self, engine: Arc<dyn OffloadEngine>) {
        self.offload_metrics.track(engine.clone());
        if let Ok(mut m) = self.engines.lock() {
            m.insert(engine.name().to_owned(), engine);
        }
    }

    /// The offload engines' counters.
    pub fn offload_metrics(&self) -> &Arc<OffloadMetrics> {
        &self.offload_metrics
    }

    /// The dispatcher over the engines `cfg` names, creating software engines for
    /// names not seen before. Every engine is checked before any starts.
    ///
    /// # Errors
    /// No engine, an empty name, or too many threads for an engine; the field is
    /// `offload.engines[i]...`.
    pub fn dispatcher(&self, cfg: &OffloadConfig) -> Result<Dispatcher, ConfigBuildError> {
        cfg.validate()?;
        let Ok(mut known) = self.engines.lock() else {
            return Err(ConfigBuildError::invalid(
                "offload",
                "the engine registry is poisoned",
            ));
        };
        let mut engines = Vec::new();
        for e in &cfg.engines {
            let engine = match known.get(&e.name) {
                Some(engine) => engine.clone(),
                None => {
                    // Its threads start with its first job: a config that is only
                    // validated starts none.
                    let threads = usize::try_from(e.threads.get()).unwrap_or(1);
                    let engine: Arc<dyn OffloadEngine> = Arc::new(
                        SoftwareEngine::builder(&e.name)
                            .threads(threads)
                            .priority(e.thread_priority)
                            .deferred(),
                    );
                    self.offload_metrics.track(engine.clone());
                    known.insert(e.name.clone(), engine.clone());
                    engine
                }
            };
            engines.push(engine);
        }
        Ok(Dispatcher::new(engines))
    }
}

/// What admin `/stats/prometheus` renders for TLS: the runtime's counters.
pub(crate) fn render(runtime: &TlsRuntime, out: &mut String) {
    runtime.metrics.render(out);
    #[cfg(feature = "offload")]
    runtime.offload_metrics.render(out);
}
