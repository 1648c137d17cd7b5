//! The parts of a snapshot made by registered factories: a cluster's balancer,
//! extensions, transport and protocol; filter stacks; a listener's protocols.

use std::sync::Arc;

use crate::{
    cluster::{Cluster, ClusterExtension, ClusterParts},
    config::{ClusterConfig, ListenerConfig, ListenerProtocol, TypedConfig, UpstreamProtocol},
    protocol::ProtocolServer,
    registry::{BuildContext, LayerFn, Registry},
    router::RouteTable,
    ConfigError,
};

/// The balancer, extensions, transport and protocol of a cluster: kept from the
/// previous cluster of that name when their config sections are unchanged (so their
/// state survives a reload), else made by the registered factories.
pub(super) fn cluster_parts(
    c: &ClusterConfig,
    path: &str,
    registry: &Registry,
    ctx: &BuildContext<'_>,
    old: Option<&Cluster>,
) -> Result<ClusterParts, ConfigError> {
    let balancer = match old.filter(|o| o.config.lb == c.lb) {
        Some(o) => o.balancer.clone(),
        None => match registry.balancer(&c.lb.typed, &c.lb.config, ctx) {
            None => {
                return Err(ConfigError::new(
                    format!("{path}.lb.typed"),
                    format!("unknown load-balancing policy {:?}", c.lb.typed),
                ))
            }
            Some(Err(e)) => return Err(e.within(&format!("{path}.lb.config"))),
            Some(Ok(b)) => b,
        },
    };
    let extensions: Arc<[Arc<dyn ClusterExtension>]> = match old
        .filter(|o| o.config.extensions == c.extensions)
    {
        Some(o) => o.extensions.clone(),
        None => {
            let mut v = Vec::with_capacity(c.extensions.len());
            for (j, x) in c.extensions.iter().enumerate() {
                match registry.cluster_extension(&x.typed, &x.config, ctx) {
                    None => {
                        return Err(ConfigError::new(
                            format!("{path}.extensions[{j}].typed"),
                            format!("unknown cluster extension {:?}", x.typed),
                        ))
                    }
                    Some(Err(e)) => return Err(e.within(&format!("{path}.extensions[{j}].config"))),
                    Some(Ok(e)) => v.push(e),
                }
            }
            v.into()
        }
    };
    let transport = match (
        &c.transport,
        old.filter(|o| o.config.transport == c.transport),
    ) {
        (None, _) => None,
        (Some(_), Some(o)) => o.transport.clone(),
        (Some(t), None) => match registry.transport(&t.typed, &t.config, ctx) {
            None => {
                return Err(ConfigError::new(
                    format!("{path}.transport.typed"),
                    format!("unknown transport {:?}", t.typed),
                ))
            }
            Some(Err(e)) => return Err(e.within(&format!("{path}.transport.config"))),
            Some(Ok(t)) => Some(t),
        },
    };
    let same_protocol = |o: &&Cluster| {
        o.config.protocol == c.protocol && o.config.protocol_options == c.protocol_options
    };
    let protocol = match (&c.protocol, old.filter(same_protocol)) {
        (UpstreamProtocol::Named(_), Some(o)) => o.protocol.clone(),
        (UpstreamProtocol::Named(name), None) => {
            match registry.upstream_protocol(name, &c.protocol_options, ctx) {
                None => {
                    return Err(ConfigError::new(
                        format!("{path}.protocol"),
                        format!("unknown upstream protocol {name:?}"),
                    ))
                }
                Some(Err(e)) => return Err(e.within(&format!("{path}.protocol_options"))),
                Some(Ok(p)) => Some(p),
            }
        }
        _ => None,
    };
    Ok(ClusterParts {
        balancer,
        extensions,
        transport,
        protocol,
    })
}

/// Builds filters from their config sections at `path`, outermost first.
pub(super) fn filter_layers(
    path: &str,
    filters: &[TypedConfig],
    registry: &Registry,
    ctx: &BuildContext<'_>,
) -> Result<Vec<LayerFn>, ConfigError> {
    let mut layers = Vec::with_capacity(filters.len());
    for (j, f) in filters.iter().enumerate() {
        match registry.filter(&f.typed, &f.config, ctx) {
            None => {
                return Err(ConfigError::new(
                    format!("{path}[{j}].typed"),
                    format!("unknown filter {:?}", f.typed),
                ))
            }
            Some(Err(e)) => return Err(e.within(&format!("{path}[{j}].config"))),
            Some(Ok(layer)) => layers.push(layer),
        }
    }
    Ok(layers)
}

/// Builds each route's own filter stack (`routes[].filters`).
pub(super) fn build_route_filters(
    path: &str,
    l: &ListenerConfig,
    routes: &RouteTable,
    registry: &Registry,
    ctx: &BuildContext<'_>,
) -> Result<(), ConfigError> {
    for (v, vhost) in l.virtual_hosts.iter().enumerate() {
        for (r, route) in vhost.routes.iter().enumerate() {
            if route.filters.is_empty() {
                continue;
            }
            let at = format!("{path}.virtual_hosts[{v}].routes[{r}].filters");
            let name = match &route.name {
                Some(n) => n.clone(),
                None => format!("{}/{r}", vhost.name),
            };
            let route_ctx = BuildContext {
                route: Some(&name),
                ..*ctx
            };
            let layers = filter_layers(&at, &route.filters, registry, &route_ctx)?;
            routes.set_route_filters(v, r, &layers);
        }
    }
    Ok(())
}

/// The registered protocols a listener serves.
pub(super) fn listener_protocols(
    path: &str,
    l: &ListenerConfig,
    registry: &Registry,
    ctx: &BuildContext<'_>,
) -> Result<Arc<[Arc<dyn ProtocolServer>]>, ConfigError> {
    for name in l.protocol_options.keys() {
        if registry.protocol_names().all(|n| n != name) {
            return Err(ConfigError::new(
                format!("{path}.protocol_options.{name}"),
                format!("unknown protocol {name:?}"),
            ));
        }
    }
    let names: Vec<String> = match &l.protocol {
        ListenerProtocol::Named(name) => {
            if registry.protocol_names().all(|n| n != &**name) {
                return Err(ConfigError::new(
                    format!("{path}.protocol"),
                    format!("unknown protocol {name:?}"),
                ));
            }
            vec![name.to_string()]
        }
        ListenerProtocol::Auto => registry.protocol_names().map(str::to_owned).collect(),
        ListenerProtocol::Http1 | ListenerProtocol::Http2 => Vec::new(),
    };
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let cfg = l.protocol_options.get(&name).cloned().unwrap_or_default();
        match registry.protocol(&name, &cfg, ctx) {
            Some(Ok(p)) => out.push(p),
            Some(Err(e)) => return Err(e.within(&format!("{path}.protocol_options.{name}"))),
            None => {}
        }
    }
    Ok(out.into())
}
