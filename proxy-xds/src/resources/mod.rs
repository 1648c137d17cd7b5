//! Envoy resources into the proxy's config model: [`cluster`] (CDS),
//! [`load_assignment`] (EDS), [`listener`] (LDS) and [`route_configuration`] (RDS);
//! and [`secret`] (SDS) into PEM material for the TLS layer.
//! Each translation either maps every field that changes behaviour or refuses the
//! resource with a [`Refusal`] naming the field.

mod action;
mod balancer;
mod circuit_breakers;
mod cluster;
mod downstream_tls;
mod endpoint;
mod fields;
mod fields_http;
mod filter_origins;
mod hcm;
mod health_check;
mod http_filters;
mod listener;
mod matchers;
mod network_filters;
mod outlier;
mod route;
mod route_hash;
mod secret;
mod tls_common;
mod typed_struct;
mod upstream_tls;

use std::time::Duration;

use envoy_types::pb::google::protobuf::{Any, Duration as PbDuration};
use prost::Message;

pub use cluster::{cluster, XdsCluster};
pub use endpoint::load_assignment;
pub(crate) use filter_origins::locate_filter;
pub use hcm::{RouteSource, HCM_NAME, HCM_TYPE, ROUTER_NAME, ROUTER_TYPE};
pub(crate) use http_filters::keep_overrides_of_its_filters;
pub use listener::{listener, XdsListener};
pub use network_filters::{CONNECTION_LIMIT_TYPE, TCP_PROXY_TYPE};
pub use route::{route_configuration, XdsRoutes, WEIGHTED_CLUSTERS_FILTER};
pub use route_hash::ROUTE_HASH_FILTER;
pub use secret::{secret, XdsSecret};
pub use typed_struct::{OWN_FILTER_PREFIX, TYPED_STRUCT_TYPE, UDPA_TYPED_STRUCT_TYPE};

use crate::Refusal;

/// The type URL of `envoy.config.cluster.v3.Cluster` (CDS).
pub const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// The type URL of `envoy.config.endpoint.v3.ClusterLoadAssignment` (EDS).
pub const ENDPOINT_TYPE: &str =
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
/// The type URL of `envoy.config.listener.v3.Listener` (LDS).
pub const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// The type URL of `envoy.config.route.v3.RouteConfiguration` (RDS).
pub const ROUTE_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// The type URL of `envoy.extensions.transport_sockets.tls.v3.Secret` (SDS).
pub const SECRET_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
/// The type URL of the `envoy.service.discovery.v3.Resource` wrapper.
const RESOURCE_WRAPPER: &str = "type.googleapis.com/envoy.service.discovery.v3.Resource";

/// Decodes `any` as an `M` of type `type_url`, unwrapping a
/// `envoy.service.discovery.v3.Resource` wrapper; `resource` names it in a refusal
/// (`resources[3]`).
///
/// # Errors
/// A [`Refusal`] when the type differs or the bytes do not decode.
///
/// # Example
/// ```
/// use envoy_types::pb::{envoy::config::cluster::v3::Cluster, google::protobuf::Any};
/// use proxy_xds::resources::{decode, CLUSTER_TYPE};
///
/// let any = Any { type_url: CLUSTER_TYPE.into(), value: vec![0x0a, 0x01, b'a'] };
/// assert_eq!(decode::<Cluster>(&any, CLUSTER_TYPE, "resources[0]").unwrap().name, "a");
/// let junk = Any { type_url: CLUSTER_TYPE.into(), value: vec![0xff, 0xff] };
/// let err = decode::<Cluster>(&junk, CLUSTER_TYPE, "resources[0]").unwrap_err();
/// assert!(err.to_string().starts_with("resources[0]: cannot decode"), "{err}");
/// ```
pub fn decode<M: Message + Default>(
    any: &Any,
    type_url: &str,
    resource: &str,
) -> Result<M, Refusal> {
    if any.type_url == RESOURCE_WRAPPER {
        let wrapper =
            envoy_types::pb::envoy::service::discovery::v3::Resource::decode(any.value.as_slice())
                .map_err(|e| {
                    Refusal::new(
                        resource,
                        "",
                        format!("cannot decode the Resource wrapper: {e}"),
                    )
                })?;
        let mut rest = wrapper.clone();
        rest.resource = None;
        rest.name = String::new();
        rest.version = String::new();
        rest.aliases = Vec::new();
        rest.metadata = None;
        refuse_leftover(&rest, fields::RESOURCE).map_err(|r| r.within_resource(resource))?;
        let inner = wrapper.resource.ok_or_else(|| {
            Refusal::new(
                resource,
                "resource",
                "a wrapper without a resource (a heartbeat) is not supported",
            )
        })?;
        return decode(&inner, type_url, resource);
    }
    if any.type_url != type_url {
        return Err(Refusal::new(
            resource,
            "type_url",
            format!("{:?} in a response of type {type_url:?}", any.type_url),
        ));
    }
    M::decode(any.value.as_slice()).map_err(|e| {
        let short = type_url.rsplit('.').next().unwrap_or(type_url);
        Refusal::new(resource, "", format!("cannot decode as {short}: {e}"))
    })
}

impl Refusal {
    /// A refusal found before the resource's name was known, moved to `resource`.
    fn within_resource(mut self, resource: &str) -> Self {
        self.resource = resource.to_owned();
        self
    }
}

/// Refuses the first field still set in `rest` (a message whose handled fields were
/// cleared): a field this proxy does not implement, which would change behaviour.
fn refuse_leftover<M: Message>(rest: &M, names: fields::Fields) -> Result<(), Refusal> {
    let bytes = rest.encode_to_vec();
    let Some(number) = first_field(&bytes) else {
        return Ok(());
    };
    let name = names
        .iter()
        .find(|(n, _)| *n == number)
        .map_or_else(|| format!("field {number}"), |(_, name)| (*name).to_owned());
    Err(Refusal::new(
        "",
        name,
        "not supported: it would change behaviour",
    ))
}

/// The field number of the first field in protobuf wire bytes.
fn first_field(bytes: &[u8]) -> Option<u32> {
    let mut key: u64 = 0;
    for (i, b) in bytes.iter().take(10).enumerate() {
        key |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return u32::try_from(key >> 3).ok();
        }
    }
    bytes.first().map(|_| 0)
}

/// A protobuf duration as a `Duration`, refusing negative or out-of-range values.
fn duration(d: &PbDuration) -> Result<Duration, String> {
    let secs = u64::try_from(d.seconds).map_err(|_| "must not be negative".to_owned())?;
    let nanos = u32::try_from(d.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or_else(|| "nanos must be from 0 to 999999999".to_owned())?;
    Ok(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_field_reads_the_key() {
        assert_eq!(first_field(&[]), None);
        assert_eq!(first_field(&[0x08, 0x01]), Some(1));
        // Field 19, length-delimited: (19 << 3) | 2 = 154 = 0x9a 0x01.
        assert_eq!(first_field(&[0x9a, 0x01, 0x00]), Some(19));
        assert_eq!(first_field(&[0xff; 12]), Some(0));
    }

    #[test]
    fn durations_are_checked() {
        let d = |seconds, nanos| duration(&PbDuration { seconds, nanos });
        assert_eq!(d(1, 500_000_000), Ok(Duration::from_millis(1500)));
        assert!(d(-1, 0).is_err());
        assert!(d(0, -1).is_err());
        assert!(d(0, 1_000_000_000).is_err());
    }
}
