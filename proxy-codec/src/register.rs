//! Registration of the `bolt` and `dubbo` protocols in a core [`Registry`].

use std::sync::Arc;

use proxy_core::{metrics::RenderMetrics, BoxHttp, Registry};

use crate::{
    config::{ServerOptions, UpstreamOptions},
    metrics::CodecMetrics,
    protocol::Protocol,
    transform::{self, JsonToRpcConfig, JsonToRpcLayer, JsonToRpcMetrics},
    Bolt, Dubbo, RpcServer, RpcUpstream,
};

/// The key the codec counters are kept under in the core's metrics store.
const METRICS_KEY: &str = "codec";
/// The key the `json_to_rpc` counters are kept under.
const JSON_TO_RPC_METRICS_KEY: &str = "codec/json_to_rpc";

impl RenderMetrics for CodecMetrics {
    fn render(&self, out: &mut String) {
        CodecMetrics::render(self, out);
    }
}

/// Registers `name` (listener and upstream sides) for `protocol`: what [`register`]
/// does for Bolt and Dubbo, and what a plug-in protocol of a user's does for itself.
///
/// The factories parse `listeners[].protocol_options.<name>` as [`ServerOptions`] and
/// `clusters[].protocol_options` as [`UpstreamOptions`] and call [`RpcServer::new`] /
/// [`RpcUpstream::new`], the constructors code uses; errors name the field within
/// the section.
///
/// ```
/// use proxy_core::{config::Config, snapshot::Snapshot, Registry};
///
/// let mut registry = Registry::default();
/// proxy_codec::register_protocol(&mut registry, "bolt", proxy_codec::Bolt);
/// let config = Config::from_yaml(r#"
/// listeners:
///   - name: rpc
///     address: 127.0.0.1:0
///     protocol: bolt
///     protocol_options:
///       bolt: { max_frame_bytes: 0 }
///     virtual_hosts: []
/// clusters: []
/// "#).unwrap();
/// let err = Snapshot::build(config, &registry, None).unwrap_err();
/// assert_eq!(err.path, "listeners[0].protocol_options.bolt.max_frame_bytes");
/// ```
pub fn register_protocol<P: Protocol + Clone>(registry: &mut Registry, name: &str, protocol: P) {
    let server = protocol.clone();
    registry.register_protocol(name, move |cfg, ctx| {
        let options: ServerOptions = cfg.parse()?;
        let metrics = ctx.metrics::<CodecMetrics>(METRICS_KEY);
        let server = RpcServer::new(server.clone(), options)?.with_metrics(metrics);
        Ok(Arc::new(server))
    });
    registry.register_upstream_protocol(name, move |cfg, ctx| {
        let options: UpstreamOptions = cfg.parse()?;
        let metrics = ctx.metrics::<CodecMetrics>(METRICS_KEY);
        let upstream = RpcUpstream::new(protocol.clone(), options)?.with_metrics(metrics);
        Ok(Arc::new(upstream))
    });
}

/// Registers the `bolt` and `dubbo` protocols, listener side
/// (`listeners[].protocol: bolt | dubbo | auto`, options in
/// `listeners[].protocol_options.<name>`) and upstream side
/// (`clusters[].protocol: bolt | dubbo`, options in `clusters[].protocol_options`),
/// and the `json_to_rpc` filter ([`JsonToRpcConfig`], on a route whose cluster
/// speaks Bolt or Dubbo).
pub fn register(registry: &mut Registry) {
    register_protocol(registry, "bolt", Bolt);
    register_protocol(registry, "dubbo", Dubbo);
    registry.register_filter(transform::NAME, |cfg, ctx| {
        let config: JsonToRpcConfig = cfg.parse()?;
        let metrics = ctx.metrics::<JsonToRpcMetrics>(JSON_TO_RPC_METRICS_KEY);
        let layer = JsonToRpcLayer::try_from(&config)?.with_metrics(metrics);
        Ok(Arc::new(move |inner: BoxHttp| {
            BoxHttp::new(tower_layer::Layer::layer(&layer, inner))
        }))
    });
}
