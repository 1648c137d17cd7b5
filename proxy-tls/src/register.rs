//! Registration of the TLS factories with proxy-core's registry.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
};

use proxy_core::{
    metrics::RenderMetrics, registry::BuildContext, upstream::UpstreamTransport, BoxConn, Registry,
};

use crate::{
    accept::{SessionState, TerminationLayer},
    config::{self, OffloadConfig, OriginationConfig, TerminationConfig},
    metrics::TlsMetrics,
    offload::{Dispatcher, OffloadEngine, OffloadMetrics, SoftwareEngine},
    origin::OriginationTransport,
    rotation::{MemorySecrets, SecretSource},
};

/// What the TLS factories share across listeners and config reloads: the secret
/// source, the offload engines (by name) and the counters.
#[derive(Debug, Clone)]
pub struct TlsRuntime {
    secrets: Arc<dyn SecretSource>,
    engines: Arc<Mutex<HashMap<String, Arc<dyn OffloadEngine>>>>,
    sessions: Arc<Mutex<HashMap<String, (SessionKey, SessionState)>>>,
    metrics: Arc<TlsMetrics>,
    offload_metrics: Arc<OffloadMetrics>,
}

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
            engines: Arc::default(),
            sessions: Arc::default(),
            metrics: Arc::default(),
            offload_metrics: Arc::default(),
        }
    }

    /// Makes `engine` available to `offload.engines[].name` (a hardware engine, say);
    /// names not added here get a software engine on first use.
    pub fn add_engine(&self, engine: Arc<dyn OffloadEngine>) {
        self.offload_metrics.track(engine.clone());
        if let Ok(mut m) = self.engines.lock() {
            m.insert(engine.name().to_owned(), engine);
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

    /// The offload engines' counters.
    pub fn offload_metrics(&self) -> &Arc<OffloadMetrics> {
        &self.offload_metrics
    }

    /// The dispatcher over the engines `cfg` names, creating software engines for
    /// names not seen before.
    ///
    /// # Errors
    /// Too many threads for an engine, or an engine thread pool could not start;
    /// names the field.
    pub fn dispatcher(&self, cfg: &OffloadConfig) -> Result<Dispatcher, String> {
        let mut engines = Vec::new();
        let Ok(mut known) = self.engines.lock() else {
            return Err("offload: engine registry poisoned".into());
        };
        // Every count checked before any engine starts its threads.
        for (i, e) in cfg.engines.iter().enumerate() {
            if e.threads.get() > crate::config::MAX_ENGINE_THREADS {
                return Err(format!(
                    "offload.engines[{i}].threads: {} is above {}",
                    e.threads,
                    crate::config::MAX_ENGINE_THREADS
                ));
            }
        }
        for (i, e) in cfg.engines.iter().enumerate() {
            let engine = match known.get(&e.name) {
                Some(engine) => engine.clone(),
                None => {
                    let sw = SoftwareEngine::new(&e.name, e.threads.get())
                        .map_err(|err| format!("offload.engines[{i}]: starting threads: {err}"))?;
                    let engine: Arc<dyn OffloadEngine> = Arc::new(sw);
                    self.offload_metrics.track(engine.clone());
                    known.insert(e.name.clone(), engine.clone());
                    engine
                }
            };
            engines.push(engine);
        }
        if engines.is_empty() {
            return Err("offload.engines: at least one engine is required".into());
        }
        Ok(Dispatcher::new(engines))
    }
}

/// What admin `/stats/prometheus` renders for TLS: the runtime's counters, set when a
/// factory first runs (core keeps this object for the life of the registry).
#[derive(Debug, Default)]
pub struct TlsMetricsExport {
    inner: OnceLock<(Arc<TlsMetrics>, Arc<OffloadMetrics>)>,
}

impl RenderMetrics for TlsMetricsExport {
    fn render(&self, out: &mut String) {
        if let Some((tls, offload)) = self.inner.get() {
            tls.render(out);
            offload.render(out);
        }
    }
}

/// What resumption state depends on: equal keys reuse the state across reloads.
type SessionKey = (crate::config::SessionConfig, crate::config::EarlyDataConfig);

impl TlsRuntime {
    /// The resumption state of `listener`, kept while its session settings stay.
    fn sessions(
        &self,
        listener: Option<&str>,
        cfg: &TerminationConfig,
    ) -> Result<SessionState, String> {
        let fresh = || SessionState::new(cfg).map_err(|e| crate::error_chain(&e));
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

    fn export(&self, ctx: &BuildContext<'_>) {
        let export = ctx.metrics::<TlsMetricsExport>("tls");
        let _ = export
            .inner
            .set((self.metrics.clone(), self.offload_metrics.clone()));
    }
}

/// Registers the `tls` network filter (termination) and the `tls` upstream transport
/// (origination) with a default runtime (an empty in-memory secret source).
pub fn register(registry: &mut Registry) {
    register_with(registry, TlsRuntime::default());
}

/// Registers the `tls` network filter and upstream transport sharing `runtime`.
pub fn register_with(registry: &mut Registry, runtime: TlsRuntime) {
    let rt = runtime.clone();
    registry.register_network_filter("tls", move |cfg, ctx| {
        rt.export(ctx);
        let c: TerminationConfig = config::parse(cfg)?;
        c.validate().map_err(|e| crate::error_chain(&e))?;
        let offload = match &c.offload {
            Some(o) => Some(rt.dispatcher(o)?),
            None => None,
        };
        let sessions = rt.sessions(ctx.listener, &c)?;
        let layer = TerminationLayer::with_sessions(
            &c,
            rt.secrets.clone(),
            offload,
            rt.metrics.clone(),
            sessions,
        )
        .map_err(|e| crate::error_chain(&e))?;
        Ok(Arc::new(move |inner: BoxConn| layer.layer(inner)))
    });
    let rt = runtime;
    registry.register_transport("tls", move |cfg, ctx| {
        rt.export(ctx);
        let mut c: OriginationConfig = config::parse(cfg)?;
        alpn_for_cluster(&mut c, ctx)?;
        let transport = OriginationTransport::new(&c, rt.secrets.clone(), rt.metrics.clone())
            .map_err(|e| crate::error_chain(&e))?;
        Ok(Arc::new(transport) as Arc<dyn UpstreamTransport>)
    });
}

/// Offers the ALPN of the cluster's protocol when the section names none, and refuses
/// a list that leaves it out (an HTTP/2 cluster whose server would fall back to
/// HTTP/1.1 and then fail on the HTTP/2 preface).
fn alpn_for_cluster(
    c: &mut OriginationConfig,
    ctx: &proxy_core::BuildContext<'_>,
) -> Result<(), String> {
    use proxy_core::config::UpstreamProtocol;
    let wanted = match ctx.cluster_config.map(|cc| &cc.protocol) {
        Some(UpstreamProtocol::Http2) => "h2",
        Some(UpstreamProtocol::Http1) => "http/1.1",
        // Other protocols (Bolt, Dubbo) have no registered ALPN id: offer what is set.
        _ => return Ok(()),
    };
    if c.alpn.is_empty() {
        c.alpn = vec![wanted.to_owned()];
    } else if !c.alpn.iter().any(|p| p == wanted) {
        return Err(format!(
            "alpn: {:?} leaves out {wanted:?}, the protocol of this cluster",
            c.alpn
        ));
    }
    Ok(())
}
