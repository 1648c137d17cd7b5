//! EDS: an Envoy `ClusterLoadAssignment` into the endpoints of a cluster.

use std::{
    collections::{BTreeMap, HashSet},
    net::{IpAddr, SocketAddr},
};

use envoy_types::pb::{
    envoy::config::{
        core::v3::{address, socket_address::PortSpecifier, HealthStatus, SocketAddress},
        endpoint::v3::{lb_endpoint::HostIdentifier, ClusterLoadAssignment, LbEndpoint},
    },
    google::protobuf::value::Kind,
};
use proxy_core::config::EndpointConfig;
use serde_json::json;

use super::{fields, refuse_leftover};
use crate::Refusal;

/// Translates an Envoy `ClusterLoadAssignment` into endpoints.
///
/// Each endpoint keeps its address, its `load_balancing_weight` (1 when absent) and
/// labels: `region`, `zone` and `sub_zone` from its locality, and the string, number
/// and bool values of its `envoy.lb` metadata. Endpoints UNHEALTHY, DRAINING or
/// TIMEOUT are left out; DEGRADED ones serve only when a priority has no healthy
/// endpoint. Only the lowest-numbered priority with an endpoint that can serve is
/// used (Envoy spills part of the traffic to the next priority when fewer than
/// about 72% of a priority's endpoints are healthy; this proxy does not).
/// Locality weights need locality-weighted balancing, which clusters refuse, so they
/// are not used. Refused, naming the field: named endpoints, host names (endpoints
/// must be IP addresses), UDP, named ports, pipes and internal addresses,
/// additional addresses, `drop_overloads`, `endpoint_stale_after`, a weight of 0,
/// an address listed twice.
///
/// # Errors
/// A [`Refusal`] naming the assignment and the field.
///
/// # Example
/// ```
/// use envoy_types::pb::envoy::config::{core::v3::{address, socket_address::PortSpecifier, Address, SocketAddress},
///     endpoint::v3::{lb_endpoint::HostIdentifier, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints}};
///
/// let at = |ip: &str, port| LbEndpoint {
///     host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
///         address: Some(Address { address: Some(address::Address::SocketAddress(SocketAddress {
///             address: ip.into(), port_specifier: Some(PortSpecifier::PortValue(port)), ..Default::default()
///         })) }),
///         ..Default::default()
///     })),
///     ..Default::default()
/// };
/// let mut cla = ClusterLoadAssignment {
///     cluster_name: "web".into(),
///     endpoints: vec![LocalityLbEndpoints { lb_endpoints: vec![at("10.0.0.1", 80)], ..Default::default() }],
///     ..Default::default()
/// };
/// let eps = proxy_xds::resources::load_assignment(&cla)?;
/// assert_eq!(eps[0].address(), "10.0.0.1:80".parse().unwrap());
///
/// cla.endpoints[0].lb_endpoints.push(at("web.internal", 80));
/// let err = proxy_xds::resources::load_assignment(&cla).unwrap_err();
/// assert_eq!(err.path, "endpoints[0].lb_endpoints[1].endpoint.address.socket_address.address");
/// # Ok::<(), proxy_xds::Refusal>(())
/// ```
pub fn load_assignment(cla: &ClusterLoadAssignment) -> Result<Vec<EndpointConfig>, Refusal> {
    let resource = format!("cluster_load_assignment {:?}", cla.cluster_name);
    translate(cla).map_err(|r| Refusal { resource, ..r })
}

/// How an endpoint may serve, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Serving {
    Healthy,
    Degraded,
}

fn translate(cla: &ClusterLoadAssignment) -> Result<Vec<EndpointConfig>, Refusal> {
    let mut rest = cla.clone();
    rest.cluster_name.clear();
    rest.endpoints.clear();
    rest.policy = None;
    refuse_leftover(&rest, fields::LOAD_ASSIGNMENT)?;
    if let Some(policy) = &cla.policy {
        let mut rest = policy.clone();
        // Only shape spill-over between priorities, which is not done here.
        rest.overprovisioning_factor = None;
        rest.weighted_priority_health = false;
        refuse_leftover(&rest, fields::POLICY).map_err(|r| r.within("policy"))?;
    }
    // (priority, serving) -> endpoints.
    let mut levels: BTreeMap<(u32, Serving), Vec<EndpointConfig>> = BTreeMap::new();
    let mut seen = HashSet::new();
    for (i, group) in cla.endpoints.iter().enumerate() {
        let gpath = format!("endpoints[{i}]");
        let mut rest = group.clone();
        rest.locality = None;
        rest.lb_endpoints.clear();
        rest.load_balancing_weight = None;
        rest.priority = 0;
        rest.proximity = None;
        rest.metadata = None;
        refuse_leftover(&rest, fields::LOCALITY_ENDPOINTS).map_err(|r| r.within(&gpath))?;
        let mut labels = BTreeMap::new();
        if let Some(l) = &group.locality {
            for (k, v) in [
                ("region", &l.region),
                ("zone", &l.zone),
                ("sub_zone", &l.sub_zone),
            ] {
                if !v.is_empty() {
                    labels.insert(k.to_owned(), v.clone());
                }
            }
        }
        for (j, lb) in group.lb_endpoints.iter().enumerate() {
            let path = format!("{gpath}.lb_endpoints[{j}]");
            let (address, serving) = endpoint(lb).map_err(|r| r.within(&path))?;
            if !seen.insert(address) {
                return Err(Refusal::new(
                    "",
                    path,
                    format!("duplicate endpoint {address}"),
                ));
            }
            let Some(serving) = serving else { continue };
            let weight = match &lb.load_balancing_weight {
                None => 1,
                Some(w) if w.value == 0 => {
                    return Err(Refusal::new(
                        "",
                        format!("{path}.load_balancing_weight"),
                        "must be at least 1",
                    ));
                }
                Some(w) => w.value,
            };
            let mut metadata = labels.clone();
            lb_metadata(lb, &mut metadata);
            let ep: EndpointConfig = proxy_core::config::from_value(&json!({
                "address": address, "weight": weight, "metadata": metadata,
            }))
            .map_err(|e| Refusal::new("", path, e))?;
            levels
                .entry((group.priority, serving))
                .or_default()
                .push(ep);
        }
    }
    // The best priority that can serve; within it, healthy before degraded.
    Ok(levels
        .into_iter()
        .next()
        .map(|(_, eps)| eps)
        .unwrap_or_default())
}

/// The address of one endpoint and how it may serve (`None`: it may not).
fn endpoint(lb: &LbEndpoint) -> Result<(SocketAddr, Option<Serving>), Refusal> {
    let mut rest = lb.clone();
    rest.host_identifier = None;
    rest.health_status = 0;
    rest.metadata = None;
    rest.load_balancing_weight = None;
    refuse_leftover(&rest, fields::LB_ENDPOINT)?;
    let ep = match &lb.host_identifier {
        Some(HostIdentifier::Endpoint(ep)) => ep,
        Some(HostIdentifier::EndpointName(_)) => {
            return Err(Refusal::new(
                "",
                "endpoint_name",
                "named endpoints are not supported",
            ));
        }
        None => return Err(Refusal::new("", "endpoint", "missing (required)")),
    };
    let mut rest = ep.clone();
    rest.address = None;
    rest.hostname.clear();
    rest.health_check_config = None;
    rest.observability_name.clear();
    refuse_leftover(&rest, fields::ENDPOINT).map_err(|r| r.within("endpoint"))?;
    let sa = match ep.address.as_ref().and_then(|a| a.address.as_ref()) {
        Some(address::Address::SocketAddress(sa)) => sa,
        Some(address::Address::Pipe(_)) => {
            return Err(Refusal::new("", "endpoint.address.pipe", "not supported"));
        }
        Some(address::Address::EnvoyInternalAddress(_)) => {
            return Err(Refusal::new(
                "",
                "endpoint.address.envoy_internal_address",
                "not supported",
            ));
        }
        None => return Err(Refusal::new("", "endpoint.address", "missing (required)")),
    };
    let addr = socket_address(sa).map_err(|r| r.within("endpoint.address.socket_address"))?;
    let serving = match HealthStatus::try_from(lb.health_status) {
        Ok(HealthStatus::Unknown | HealthStatus::Healthy) => Some(Serving::Healthy),
        Ok(HealthStatus::Degraded) => Some(Serving::Degraded),
        Ok(HealthStatus::Unhealthy | HealthStatus::Draining | HealthStatus::Timeout) => None,
        Err(_) => {
            return Err(Refusal::new(
                "",
                "health_status",
                format!("unknown status {}", lb.health_status),
            ));
        }
    };
    Ok((addr, serving))
}

fn socket_address(sa: &SocketAddress) -> Result<SocketAddr, Refusal> {
    if sa.protocol != 0 {
        return Err(Refusal::new("", "protocol", "only TCP is supported"));
    }
    let mut rest = sa.clone();
    rest.protocol = 0;
    rest.address.clear();
    rest.port_specifier = None;
    rest.ipv4_compat = false;
    refuse_leftover(&rest, fields::SOCKET_ADDRESS)?;
    let ip: IpAddr = sa.address.parse().map_err(|_| {
        Refusal::new(
            "",
            "address",
            format!(
                "{:?} is not an IP address (host names are not resolved)",
                sa.address
            ),
        )
    })?;
    let port = match &sa.port_specifier {
        Some(PortSpecifier::PortValue(p)) => u16::try_from(*p)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| Refusal::new("", "port_value", format!("{p} is not a port")))?,
        Some(PortSpecifier::NamedPort(_)) => {
            return Err(Refusal::new(
                "",
                "named_port",
                "named ports are not supported",
            ));
        }
        None => return Err(Refusal::new("", "port_value", "missing (required)")),
    };
    Ok(SocketAddr::new(ip, port))
}

/// The scalar values of the endpoint's `envoy.lb` metadata, as labels.
fn lb_metadata(lb: &LbEndpoint, labels: &mut BTreeMap<String, String>) {
    let Some(fields) = lb
        .metadata
        .as_ref()
        .and_then(|m| m.filter_metadata.get("envoy.lb"))
    else {
        return;
    };
    for (k, v) in &fields.fields {
        let text = match &v.kind {
            Some(Kind::StringValue(s)) => s.clone(),
            Some(Kind::BoolValue(b)) => b.to_string(),
            Some(Kind::NumberValue(n)) => n.to_string(),
            _ => continue,
        };
        labels.insert(k.clone(), text);
    }
}

#[cfg(test)]
#[path = "endpoint_tests.rs"]
mod tests;
