//! `register`: every filter of this crate by name, as factories for the registry.

use std::sync::Arc;

use proxy_core::{
    registry::{BuildContext, LayerFn},
    BoxConn, BoxError, BoxHttp, ConnLayerFn, Connection, HttpRequest, HttpResponse, Registry,
};
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    access_log, api_metrics, auth, conn_fault, conn_limit, fault, header_rewrite, local_rate_limit,
    metrics::{CounterSet, FilterMetrics},
    mirror, rbac, tcp_proxy, trace, ConfigError,
};

/// Registers every filter of this crate:
///
/// | config `typed` | kind | module |
/// |---|---|---|
/// | `tcp_proxy` | network filter (terminal) | [`crate::tcp_proxy`] |
/// | `connection_limit` | network filter | [`crate::conn_limit`] |
/// | `connection_fault` | network filter | [`crate::conn_fault`] |
/// | `fault` | HTTP filter | [`crate::fault`] |
/// | `mirror` | HTTP filter | [`crate::mirror`] |
/// | `rbac` | HTTP filter | [`crate::rbac`] |
/// | `header_rewrite` | HTTP filter | [`crate::header_rewrite`] |
/// | `access_log` | HTTP filter | [`crate::access_log`] |
/// | `local_rate_limit` | HTTP filter | [`crate::local_rate_limit`] |
/// | `adaptive_concurrency` | HTTP filter | [`crate::adaptive`] |
/// | `jwt_auth` | HTTP filter | [`crate::auth`] |
/// | `api_key_auth` | HTTP filter | [`crate::auth`] |
/// | `trace_context` | HTTP filter | [`crate::trace`] |
/// | `api_metrics` | HTTP filter | [`crate::api_metrics`] |
/// | `lua` (feature `lua`) | HTTP filter | `crate::lua` |
/// | `redis_quota` | HTTP filter | [`crate::redis_quota`] |
/// | `request_size_limit` | HTTP filter | [`crate::body_limit`] |
///
/// Each factory only parses its section ([`proxy_core::config::Section::parse`]) and
/// calls the layer's constructor, so a config error names the field path inside the
/// section (core prefixes the section's own path), and YAML builds exactly what code
/// builds. A relative access log `path` (and a JWKS `ca_path`, a `lua` filter's
/// `script.path`) resolves from the config file's directory. `jwt_auth` and
/// `api_key_auth` count into one family, `proxy_filters_auth_*`.
///
/// Metrics are kept per filter kind under `filters/<kind>` in the build context and
/// rendered as `proxy_filters_<kind>_*{filter="<name>"}`, where the name is the
/// section's `name`, else the route's for a route's own filter, else the listener's.
///
/// # Example
/// ```
/// let mut registry = proxy_core::Registry::default();
/// proxy_filters::register(&mut registry);
/// assert!(registry.has_filter("rbac"));
/// ```
pub fn register(registry: &mut Registry) {
    crate::adaptive::register(registry);
    crate::redis_quota::register(registry);
    crate::body_limit::register(registry);
    #[cfg(feature = "lua")]
    registry.register_filter(crate::lua::NAME, |cfg, ctx| {
        let mut c: crate::lua::LuaConfig = cfg.parse()?;
        if let crate::lua::ScriptSource::Path(p) = &mut c.script {
            *p = ctx.resolve_path(p);
        }
        let counters = counters(ctx, crate::lua::NAME, c.name.as_deref());
        Ok(http(crate::lua::LuaLayer::new(&c, counters)?))
    });
    registry.register_network_filter(tcp_proxy::NAME, |cfg, ctx| {
        let c: tcp_proxy::TcpProxyConfig = cfg.parse()?;
        let cluster = cluster(ctx, &c.cluster)?;
        let counters = counters(ctx, tcp_proxy::NAME, c.name.as_deref());
        Ok(network(tcp_proxy::TcpProxyLayer::new(
            &c, cluster, counters,
        )?))
    });
    registry.register_network_filter(conn_limit::NAME, |cfg, ctx| {
        let c: conn_limit::ConnLimitConfig = cfg.parse()?;
        let counters = counters(ctx, conn_limit::NAME, c.name.as_deref());
        // The open connections carry over reloads: the new config counts them.
        let counts = ctx.metrics::<conn_limit::ConnCounts>(&format!(
            "filters/connection_limit/counts/{}/{}",
            ctx.listener.unwrap_or_default(),
            c.name.as_deref().unwrap_or_default()
        ));
        Ok(network(conn_limit::ConnLimitLayer::with_counts(
            &c, counts, counters,
        )?))
    });
    registry.register_network_filter(conn_fault::NAME, |cfg, ctx| {
        let c: conn_fault::ConnFaultConfig = cfg.parse()?;
        let counters = counters(ctx, conn_fault::NAME, c.name.as_deref());
        Ok(network(conn_fault::ConnFaultLayer::new(&c, counters)?))
    });
    registry.register_filter(fault::NAME, |cfg, ctx| {
        let c: fault::FaultConfig = cfg.parse()?;
        let counters = counters(ctx, fault::NAME, c.name.as_deref());
        Ok(http(fault::FaultLayer::new(&c, counters)?))
    });
    registry.register_filter(mirror::NAME, |cfg, ctx| {
        let c: mirror::MirrorConfig = cfg.parse()?;
        let shadow = Arc::new(mirror::ClusterShadow(cluster(ctx, &c.cluster)?));
        let counters = counters(ctx, mirror::NAME, c.name.as_deref());
        Ok(http(mirror::MirrorLayer::new(&c, shadow, counters)?))
    });
    registry.register_filter(rbac::NAME, |cfg, ctx| {
        let c: rbac::RbacConfig = cfg.parse()?;
        let counters = counters(ctx, rbac::NAME, c.name.as_deref());
        Ok(http(rbac::RbacLayer::new(&c, counters)?))
    });
    registry.register_filter(header_rewrite::NAME, |cfg, _ctx| {
        let c: header_rewrite::HeaderRewriteConfig = cfg.parse()?;
        Ok(http(header_rewrite::HeaderRewriteLayer::new(&c)?))
    });
    registry.register_filter(access_log::NAME, |cfg, ctx| {
        let mut c: access_log::AccessLogConfig = cfg.parse()?;
        // A relative path is the config file's neighbour, not the working directory's.
        c.path = c.path.map(|p| ctx.resolve_path(&p));
        let counters = counters(ctx, access_log::NAME, c.name.as_deref());
        Ok(http(
            access_log::AccessLogLayer::new(&c, counters)?.with_listener(ctx.listener),
        ))
    });
    registry.register_filter(auth::JWT_NAME, |cfg, ctx| {
        let mut c: auth::JwtAuthConfig = cfg.parse()?;
        if let auth::JwksSource::Remote(r) = &mut c.jwks {
            r.ca_path = r.ca_path.as_deref().map(|p| ctx.resolve_path(p));
        }
        let counters = counters(ctx, "auth", c.name.as_deref());
        // An unchanged `jwks.remote` keeps its fetched keys across reloads.
        let caches = ctx.metrics::<auth::JwksCaches>("filters/auth/jwks");
        let key = format!(
            "{}/{}/{}",
            ctx.listener.unwrap_or_default(),
            ctx.route.unwrap_or_default(),
            c.name.as_deref().unwrap_or_default()
        );
        Ok(http(auth::JwtAuthLayer::with_caches(
            &c, counters, &caches, &key,
        )?))
    });
    registry.register_filter(auth::API_KEY_NAME, |cfg, ctx| {
        let c: auth::ApiKeyAuthConfig = cfg.parse()?;
        let counters = counters(ctx, "auth", c.name.as_deref());
        Ok(http(auth::ApiKeyAuthLayer::new(&c, counters)?))
    });
    registry.register_filter(trace::NAME, |cfg, ctx| {
        let c: trace::TraceContextConfig = cfg.parse()?;
        let counters = counters(ctx, trace::NAME, c.name.as_deref());
        Ok(http(
            trace::TraceContextLayer::new(&c, counters)?.with_api(ctx.route),
        ))
    });
    registry.register_filter(api_metrics::NAME, |cfg, ctx| {
        let mut c: api_metrics::ApiMetricsConfig = cfg.parse()?;
        c.api = c.api.or_else(|| ctx.route.map(str::to_owned));
        // One object for every instance: one family on /stats/prometheus.
        let metrics = ctx.metrics::<api_metrics::ApiMetrics>("filters/api_metrics");
        Ok(http(api_metrics::ApiMetricsLayer::new(&c, metrics)))
    });
    registry.register_filter(local_rate_limit::NAME, |cfg, ctx| {
        let c: local_rate_limit::LocalRateLimitConfig = cfg.parse()?;
        let counters = counters(ctx, local_rate_limit::NAME, c.name.as_deref());
        // The snapshot being built, told apart by its cluster map (one per build, alive
        // as long as the snapshot): the keys gauge counts the newest build's limiters.
        let build = Arc::as_ptr(ctx.clusters) as usize;
        // A named, unchanged section keeps its buckets across reloads (unnamed ones
        // start afresh: two unnamed limiters of one listener must not share).
        let layer = match c.name.as_deref() {
            Some(name) => {
                let cache =
                    ctx.metrics::<local_rate_limit::LimiterCache>("filters/local_rate_limit/state");
                let key = format!("{}/{name}", ctx.listener.unwrap_or_default());
                cache.layer_for_build(&key, &c, counters, build)?
            }
            None => local_rate_limit::LocalRateLimitLayer::with_build(&c, counters, build)?,
        };
        Ok(http(layer))
    });
}

/// The cluster named by the section's `cluster` field in the snapshot being built;
/// missing is a config error naming the field.
fn cluster(
    ctx: &BuildContext<'_>,
    name: &str,
) -> Result<Arc<proxy_core::cluster::Cluster>, ConfigError> {
    ctx.clusters
        .get(name)
        .cloned()
        .ok_or_else(|| ConfigError::UnknownCluster {
            field: "cluster".to_owned(),
            cluster: name.to_owned(),
        })
}

/// The counters of this filter instance, kept across reloads.
fn counters<C: CounterSet>(
    ctx: &BuildContext<'_>,
    kind: &'static str,
    name: Option<&str>,
) -> Arc<C> {
    let family = ctx.metrics::<FilterMetrics<C>>(&format!("filters/{kind}"));
    // Unnamed: a route's own filter is labelled by its route, a listener's by its
    // listener, so that the two do not share counters.
    family.get(name.or(ctx.route).or(ctx.listener).unwrap_or(kind))
}

fn http<L>(layer: L) -> LayerFn
where
    L: Layer<BoxHttp> + Send + Sync + 'static,
    L::Service: Service<HttpRequest, Response = HttpResponse, Error = BoxError>
        + Clone
        + Send
        + Sync
        + 'static,
    <L::Service as Service<HttpRequest>>::Future: Send + 'static,
{
    Arc::new(move |inner: BoxHttp| BoxHttp::new(layer.layer(inner)))
}

fn network<L>(layer: L) -> ConnLayerFn
where
    L: Layer<BoxConn> + Send + Sync + 'static,
    L::Service:
        Service<Connection, Response = (), Error = BoxError> + Clone + Send + Sync + 'static,
    <L::Service as Service<Connection>>::Future: Send + 'static,
{
    Arc::new(move |inner: BoxConn| BoxConn::new(layer.layer(inner)))
}
