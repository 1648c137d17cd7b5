//! LDS: an Envoy `Listener` into a [`ListenerConfig`] and where its routes come from.

use envoy_types::pb::envoy::config::{
    core::v3::{address, socket_address::PortSpecifier, Address, SocketAddress, TrafficDirection},
    listener::v3::{filter::ConfigType, FilterChain, Listener},
};
use proxy_core::config::{ListenAddress, ListenerConfig};
use serde_json::json;

use super::{
    fields, fields_http,
    filter_origins::FilterOrigins,
    hcm::{self, RouteSource, HCM_NAME, HCM_TYPE},
    network_filters, refuse_leftover, typed_struct, XdsRoutes,
};
use crate::Refusal;

/// A listener accepted from the control plane: the proxy's listener config, its
/// virtual hosts still empty, and where they come from.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct XdsListener {
    /// The listener, without virtual hosts.
    pub config: ListenerConfig,
    /// Its routes: inline, or a route configuration to ask for over RDS.
    pub routes: RouteSource,
    /// The SDS secrets its TLS names (certificates, client CAs).
    pub secrets: std::collections::BTreeSet<String>,
    /// Where its filters came from, to name them in a NACK.
    pub(crate) origins: FilterOrigins,
}

/// Translates an Envoy `Listener`: a TCP socket address (an IP, not a host name) or
/// a pipe (a Unix socket), and one filter chain (without match criteria; its TLS,
/// a `DownstreamTlsContext` with SDS secrets, onto proxy-tls's `tls` filter)
/// whose last network filter is the HTTP connection manager (the HTTP filters the
/// crate's README lists, the router last; its routes inline or over RDS (ADS)) or
/// a TCP proxy (Envoy's `TcpProxy` or a TypedStruct naming `tcp_proxy`), preceded
/// by network filters this proxy implements, in order: Envoy's `ConnectionLimit`
/// or any of this proxy's own named by a `TypedStruct`
/// (`type.googleapis.com/proxy.filters.<name>`, its `value` the filter's section;
/// see the `network_filters` module for the Envoy mappings). `enable_reuse_port`
/// maps to `reuse_port`. Everything else that changes behaviour is refused by name:
/// listener filters, original destination, transparent and free binding, socket
/// options, other network or HTTP filters, other TLS settings, access logs, UDP.
///
/// # Errors
/// A [`Refusal`] naming the listener and the field.
///
/// # Example
/// ```
/// use envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener};
///
/// let l = Listener { name: "web".into(), filter_chains: vec![FilterChain::default()], ..Default::default() };
/// let err = proxy_xds::resources::listener(&l).unwrap_err();
/// assert_eq!(err.to_string(), "listener \"web\": address: is required");
/// ```
pub fn listener(l: &Listener) -> Result<XdsListener, Refusal> {
    if l.name.is_empty() {
        return Err(Refusal::new("listener", "name", "must not be empty"));
    }
    let resource = format!("listener {:?}", l.name);
    translate(l).map_err(|r| Refusal { resource, ..r })
}

fn translate(l: &Listener) -> Result<XdsListener, Refusal> {
    refuse_leftover(&unhandled(l), fields_http::LISTENER)?;
    let address = listen_address(l.address.as_ref())?;
    let mut config: ListenerConfig = proxy_core::config::from_value(&json!({
        "name": l.name,
        "address": address.to_string(),
        "virtual_hosts": [],
    }))
    .map_err(|e| Refusal::new("", e.path, e.reason))?;
    config.reuse_port = l.enable_reuse_port.as_ref().is_none_or(|b| b.value);
    let (at, chain) = match (l.filter_chains.as_slice(), &l.default_filter_chain) {
        ([chain], None) => ("filter_chains[0]", chain),
        ([], Some(chain)) => ("default_filter_chain", chain),
        ([], None) => {
            return Err(Refusal::new(
                "",
                "filter_chains",
                "one filter chain is required",
            ))
        }
        _ => {
            return Err(Refusal::new(
                "",
                "filter_chains",
                "only one filter chain is supported (no filter chain matching)",
            ))
        }
    };
    let mut secrets = std::collections::BTreeSet::new();
    let mut origins = FilterOrigins::default();
    let routes =
        filter_chain(chain, &mut config, &mut secrets, &mut origins).map_err(|r| r.within(at))?;
    Ok(XdsListener {
        config,
        routes,
        secrets,
        origins: origins.within(&format!("{at}.")),
    })
}

/// A copy of `l` with every field handled here or without effect cleared.
#[allow(deprecated)]
fn unhandled(l: &Listener) -> Listener {
    let mut r = l.clone();
    r.name.clear();
    r.address = None;
    r.filter_chains.clear();
    r.default_filter_chain = None;
    r.enable_reuse_port = None;
    if r.bind_to_port.as_ref().is_some_and(|b| b.value) {
        r.bind_to_port = None;
    }
    let off = |b: &Option<envoy_types::pb::google::protobuf::BoolValue>| {
        b.as_ref().is_some_and(|b| !b.value)
    };
    if off(&r.use_original_dst) {
        r.use_original_dst = None;
    }
    if off(&r.transparent) {
        r.transparent = None;
    }
    if off(&r.freebind) {
        r.freebind = None;
    }
    if TrafficDirection::try_from(r.traffic_direction).is_ok() {
        r.traffic_direction = 0;
    }
    // Statistics, buffers, drain and accept tuning: no effect on what is served.
    r.stat_prefix.clear();
    r.stats_matcher = None;
    r.metadata = None;
    r.per_connection_buffer_limit_bytes = None;
    r.drain_type = 0;
    r.listener_filters_timeout = None;
    r.continue_on_listener_filters_timeout = false;
    r.tcp_fast_open_queue_length = None;
    r.tcp_backlog_size = None;
    r.connection_balance_config = None;
    r.max_connections_to_accept_per_socket_event = None;
    r.ignore_global_conn_limit = false;
    r.bypass_overload_manager = false;
    r
}

/// A socket address (an IP and a port, TCP) or a pipe (a Unix socket path).
fn listen_address(a: Option<&Address>) -> Result<ListenAddress, Refusal> {
    let required = || Refusal::new("", "address", "is required");
    match a.and_then(|a| a.address.as_ref()).ok_or_else(required)? {
        address::Address::SocketAddress(s) => socket_address(s)
            .map(ListenAddress::Tcp)
            .map_err(|r| r.within("address.socket_address")),
        address::Address::Pipe(p) => {
            let mut rest = p.clone();
            rest.path.clear();
            refuse_leftover(&rest, fields_http::PIPE).map_err(|r| r.within("address.pipe"))?;
            if p.path.is_empty() || p.path.starts_with('@') {
                return Err(Refusal::new(
                    "",
                    "address.pipe.path",
                    "a file path is required (abstract sockets are not supported)",
                ));
            }
            Ok(ListenAddress::Unix(p.path.clone().into()))
        }
        address::Address::EnvoyInternalAddress(_) => Err(Refusal::new(
            "",
            "address.envoy_internal_address",
            "not supported",
        )),
    }
}

fn socket_address(s: &SocketAddress) -> Result<std::net::SocketAddr, Refusal> {
    let mut rest = s.clone();
    rest.address.clear();
    rest.port_specifier = None;
    refuse_leftover(&rest, fields::SOCKET_ADDRESS)?;
    let ip: std::net::IpAddr = s.address.parse().map_err(|_| {
        Refusal::new(
            "",
            "address",
            format!("{:?} is not an IP address", s.address),
        )
    })?;
    let port = match &s.port_specifier {
        Some(PortSpecifier::PortValue(p)) => u16::try_from(*p)
            .map_err(|_| Refusal::new("", "port_value", format!("{p} is not a port")))?,
        Some(PortSpecifier::NamedPort(_)) => {
            return Err(Refusal::new("", "named_port", "not supported"))
        }
        None => return Err(Refusal::new("", "port_value", "is required")),
    };
    Ok(std::net::SocketAddr::new(ip, port))
}

fn filter_chain(
    c: &FilterChain,
    config: &mut ListenerConfig,
    secrets: &mut std::collections::BTreeSet<String>,
    origins: &mut FilterOrigins,
) -> Result<RouteSource, Refusal> {
    let mut rest = c.clone();
    rest.filters.clear();
    rest.transport_socket = None;
    if let Some(ts) = &c.transport_socket {
        let tls =
            super::downstream_tls::termination(ts).map_err(|r| r.within("transport_socket"))?;
        if let Some((filter, names)) = tls {
            origins.add(
                "network_filters[0]".into(),
                "transport_socket".into(),
                false,
            );
            config.network_filters.insert(0, filter);
            *secrets = names;
        }
    }
    if rest.filter_chain_match == Some(Default::default()) {
        rest.filter_chain_match = None;
    }
    rest.name.clear();
    rest.metadata = None;
    rest.transport_socket_connect_timeout = None;
    refuse_leftover(&rest, fields_http::FILTER_CHAIN)?;
    let Some((last, before)) = c.filters.split_last() else {
        return Err(Refusal::new(
            "",
            "filters",
            format!("network filters ending with {HCM_NAME} or a TCP proxy are required"),
        ));
    };
    for (i, f) in before.iter().enumerate() {
        let at = format!("filters[{i}]");
        let any = typed_config(f, &at)?;
        let mapped = network_filters::network_filter(any)
            .map_err(|r| r.within(&format!("{at}.typed_config")))?;
        match mapped {
            Some(own) if own.typed == TCP_PROXY => {
                return Err(Refusal::new(
                    "",
                    at,
                    "a TCP proxy is terminal: it must be the last filter",
                ))
            }
            Some(own) => {
                origins.add(
                    format!("network_filters[{}]", config.network_filters.len()),
                    format!("{at}.typed_config"),
                    typed_struct::is_typed_struct(any),
                );
                config.network_filters.push(own);
            }
            None => {
                return Err(Refusal::new(
                    "",
                    format!("{at}.typed_config"),
                    format!(
                        "{:?} ({}) is not a network filter this proxy implements",
                        f.name, any.type_url
                    ),
                ))
            }
        }
    }
    let at = format!("filters[{}]", before.len());
    let any = typed_config(last, &at)?;
    if any.type_url == HCM_TYPE {
        let h = super::decode(any, HCM_TYPE, "")
            .map_err(|r| Refusal::new("", format!("{at}.typed_config"), r.reason))?;
        let mut inner = FilterOrigins::default();
        let routes = hcm::http_connection_manager(&h, config, &mut inner)
            .map_err(|r| r.within(&format!("{at}.typed_config")))?;
        origins.extend(inner.within(&format!("{at}.typed_config.")));
        return Ok(routes);
    }
    let terminal = network_filters::network_filter(any)
        .map_err(|r| r.within(&format!("{at}.typed_config")))?;
    match terminal {
        Some(tcp) if tcp.typed == TCP_PROXY => {
            let clusters = network_filters::tcp_proxy_cluster(&tcp)
                .into_iter()
                .collect();
            config.network_filters.push(tcp);
            Ok(RouteSource::Inline(XdsRoutes {
                virtual_hosts: Vec::new(),
                clusters,
            }))
        }
        _ => Err(Refusal::new(
            "",
            format!("{at}.name"),
            format!(
                "{:?} ({}) is not supported (the last network filter must be {HCM_NAME} \
                 or a TCP proxy)",
                last.name, any.type_url
            ),
        )),
    }
}

/// The name of proxy-filters' terminal TCP proxy filter.
const TCP_PROXY: &str = "tcp_proxy";

/// A network filter's inline `typed_config`.
fn typed_config<'a>(
    f: &'a envoy_types::pb::envoy::config::listener::v3::Filter,
    at: &str,
) -> Result<&'a envoy_types::pb::google::protobuf::Any, Refusal> {
    match &f.config_type {
        Some(ConfigType::TypedConfig(any)) => Ok(any),
        Some(ConfigType::ConfigDiscovery(_)) => Err(Refusal::new(
            "",
            format!("{at}.config_discovery"),
            "not supported: filter configs come inline",
        )),
        None => Err(Refusal::new(
            "",
            format!("{at}.typed_config"),
            "is required",
        )),
    }
}

#[cfg(test)]
#[path = "listener_tests.rs"]
mod tests;
