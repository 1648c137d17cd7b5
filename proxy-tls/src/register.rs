//! Registration of the TLS factories with proxy-core's registry. Each factory only
//! parses its section, resolves its file paths from the config file's directory and
//! calls the same constructor code uses.

use std::sync::{Arc, OnceLock};

use proxy_core::{
    config::UpstreamProtocol, metrics::RenderMetrics, registry::BuildContext,
    upstream::UpstreamTransport, BoxConn, ConfigError, Registry,
};

use tower::Layer;

use crate::{
    accept::TerminationLayer,
    config::{OriginationConfig, TerminationConfig},
    origin::OriginationTransport,
    runtime::TlsRuntime,
};

/// What admin `/stats/prometheus` renders for TLS: the runtime's counters, set when a
/// factory first runs (core keeps this object for the life of the registry).
#[derive(Debug, Default)]
pub struct TlsMetricsExport {
    inner: OnceLock<TlsRuntime>,
}

impl RenderMetrics for TlsMetricsExport {
    fn render(&self, out: &mut String) {
        if let Some(runtime) = self.inner.get() {
            crate::runtime::render(runtime, out);
        }
    }
}

fn export(runtime: &TlsRuntime, ctx: &BuildContext<'_>) {
    let export = ctx.metrics::<TlsMetricsExport>("tls");
    let _ = export.inner.set(runtime.clone());
}

/// Registers the `tls` network filter (termination) and the `tls` upstream transport
/// (origination) with a default runtime (an empty in-memory secret source).
pub fn register(registry: &mut Registry) {
    register_with(registry, TlsRuntime::default());
}

/// Registers the `tls` network filter and upstream transport sharing `runtime`.
///
/// Relative file paths in the sections resolve from the config file's directory
/// ([`BuildContext::resolve_path`]); a listener keeps its resumption state across
/// reloads that leave its `session` and `early_data` settings unchanged.
pub fn register_with(registry: &mut Registry, runtime: TlsRuntime) {
    let rt = runtime.clone();
    registry.register_network_filter("tls", move |section, ctx| {
        export(&rt, ctx);
        let mut cfg: TerminationConfig = section.parse()?;
        cfg.resolve_paths(|p| ctx.resolve_path(p));
        let layer = TerminationLayer::for_listener(&cfg, &rt, ctx.listener)?;
        Ok(Arc::new(move |inner: BoxConn| {
            BoxConn::new(layer.layer(inner))
        }))
    });
    let rt = runtime;
    registry.register_transport("tls", move |section, ctx| {
        export(&rt, ctx);
        let mut cfg: OriginationConfig = section.parse()?;
        cfg.resolve_paths(|p| ctx.resolve_path(p));
        alpn_for_cluster(&mut cfg, ctx)?;
        let transport = OriginationTransport::new(&cfg, &rt)?;
        Ok(Arc::new(transport) as Arc<dyn UpstreamTransport>)
    });
}

/// Offers the ALPN of the cluster's protocol when the section names none, and refuses
/// a list that leaves it out (an HTTP/2 cluster whose server would fall back to
/// HTTP/1.1 and then fail on the HTTP/2 preface).
fn alpn_for_cluster(c: &mut OriginationConfig, ctx: &BuildContext<'_>) -> Result<(), ConfigError> {
    let wanted = match ctx.cluster_config.map(|cc| &cc.protocol) {
        Some(UpstreamProtocol::Http2) => "h2",
        Some(UpstreamProtocol::Http1) => "http/1.1",
        // Other protocols (Bolt, Dubbo) have no registered ALPN id: offer what is set.
        _ => return Ok(()),
    };
    if c.alpn.is_empty() {
        c.alpn = vec![wanted.to_owned()];
    } else if !c.alpn.iter().any(|p| p == wanted) {
        return Err(ConfigError::new(
            "alpn",
            format!(
                "{:?} leaves out {wanted:?}, the protocol of this cluster",
                c.alpn
            ),
        ));
    }
    Ok(())
}
