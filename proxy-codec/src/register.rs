//! Registration of the `bolt` and `dubbo` protocols in a core [`Registry`].

use std::sync::Arc;

use proxy_core::{metrics::RenderMetrics, Registry};

use crate::{
    config::{ServerOptions, UpstreamOptions},
    metrics::CodecMetrics,
    protocol::Protocol,
    Bolt, Dubbo, RpcServer, RpcUpstream,
};

/// The key the codec counters are kept under in the core's metrics store.
const METRICS_KEY: &str = "codec";

impl RenderMetrics for CodecMetrics {
    fn render(&self, out: &mut String) {
        CodecMetrics::render(self, out);
    }
}

/// Registers `name` (listener and upstream sides) for `protocol`: what [`register`]
/// does for Bolt and Dubbo, and what a plug-in protocol of a user's does for itself.
///
/// ```
/// let mut registry = proxy_core::Registry::default();
/// proxy_codec::register_protocol(&mut registry, "bolt", proxy_codec::Bolt);
/// ```
pub fn register_protocol<P: Protocol + Clone>(registry: &mut Registry, name: &str, protocol: P) {
    let server = protocol.clone();
    registry.register_protocol(name, move |cfg, ctx| {
        let options = ServerOptions::from_yaml(cfg)?;
        let metrics = ctx.metrics::<CodecMetrics>(METRICS_KEY);
        Ok(Arc::new(RpcServer::new(server.clone(), options, metrics)))
    });
    registry.register_upstream_protocol(name, move |cfg, ctx| {
        let options = UpstreamOptions::from_yaml(cfg)?;
        let metrics = ctx.metrics::<CodecMetrics>(METRICS_KEY);
        Ok(Arc::new(RpcUpstream::new(
            protocol.clone(),
            options,
            metrics,
        )))
    });
}

/// Registers the `bolt` and `dubbo` protocols, listener side
/// (`listeners[].protocol: bolt | dubbo | auto`, options in
/// `listeners[].protocol_options.<name>`) and upstream side
/// (`clusters[].protocol: bolt | dubbo`, options in `clusters[].protocol_options`).
pub fn register(registry: &mut Registry) {
    register_protocol(registry, "bolt", Bolt);
    register_protocol(registry, "dubbo", Dubbo);
}
