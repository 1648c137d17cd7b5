//! CDS: an Envoy `Cluster` into a [`ClusterConfig`].

use std::time::Duration;

use envoy_types::pb::envoy::{
    config::{
        cluster::v3::{
            cluster::{ClusterDiscoveryType, DiscoveryType, EdsClusterConfig},
            Cluster,
        },
        core::v3::{config_source::ConfigSourceSpecifier, ApiVersion, ConfigSource},
    },
    extensions::upstreams::http::v3::{
        http_protocol_options::{explicit_http_config::ProtocolConfig, UpstreamProtocolOptions},
        HttpProtocolOptions,
    },
};
use proxy_core::config::{ClusterConfig, UpstreamProtocol};
use serde_json::json;

use super::{duration, fields, refuse_leftover};
use crate::Refusal;

/// `typed_extension_protocol_options` key of the upstream HTTP options.
const HTTP_OPTIONS_KEY: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
const HTTP_OPTIONS_TYPE: &str =
    "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
/// Envoy's default connect timeout.
const ENVOY_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Envoy's `common_lb_config.healthy_panic_threshold` when absent.
const ENVOY_PANIC_THRESHOLD: f64 = 50.0;

/// A translated cluster: its config (endpoints filled in for a static cluster, empty
/// for an EDS one) and, for EDS, the resource name its endpoints come from.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct XdsCluster {
    /// The cluster in the proxy's config model.
    pub config: ClusterConfig,
    /// The EDS resource (`eds_cluster_config.service_name`, or the cluster's name);
    /// `None` for a static cluster.
    pub eds_service: Option<String>,
    /// The SDS secrets its transport names (client certificate, CAs).
    pub secrets: std::collections::BTreeSet<String>,
}

/// Translates an Envoy `Cluster`.
///
/// Mapped: `name`; `type` STATIC (endpoints from `load_assignment`) and EDS over ADS;
/// `connect_timeout` (Envoy's 5 s when absent); `lb_policy` ROUND_ROBIN, LEAST_REQUEST
/// (`choice_count`) and RANDOM onto the balancers of the same names (`round_robin`,
/// `least_request`, `random`: register proxy-lb for the last two); RING_HASH
/// (`ring_hash_lb_config` ring sizes, XX_HASH only) and MAGLEV (`table_size`) onto
/// proxy-lb's `ring_hash` and `maglev` hashing on the key the request's route
/// computed (RDS `hash_policy`, the `route_hash` route filter), a random endpoint by
/// weight without one, as in Envoy; the upstream
/// protocol (HTTP/1.1 or HTTP/2 from `typed_extension_protocol_options`); the pool's
/// idle timeout; `outlier_detection` onto proxy-lb's `outlier_detection` extension
/// (Envoy's defaults for absent fields, `common_lb_config.healthy_panic_threshold` as
/// its panic threshold; see the crate README for what is refused); one HTTP or TCP
/// `health_checks` entry onto proxy-lb's `health_check` extension (register proxy-lb's
/// `outlier` and `health` for them); `circuit_breakers` onto the cluster's
/// `circuit_breakers` (DEFAULT `max_requests`, `max_retries`, `max_connections` and
/// `max_pending_requests`, Envoy's 1024, 3, 1024 and 1024 when absent, 4294967295
/// unlimited; `max_connection_pools` only unlimited); `transport_socket` (plain text, or `UpstreamTlsContext` onto
/// proxy-tls's `tls` transport with its certificate and CAs as SDS secrets). Ignored
/// because they cannot change how traffic flows here: stats names and matchers,
/// metadata, DNS settings (DNS clusters are refused),
/// `per_connection_buffer_limit_bytes`, `preconnect_policy`, `wait_for_warm_on_init`,
/// `common_lb_config.update_merge_window`. Everything else is refused, naming the
/// field.
///
/// # Errors
/// A [`Refusal`] naming the cluster and the field.
///
/// # Example
/// ```
/// use envoy_types::pb::envoy::config::cluster::v3::{cluster::{ClusterDiscoveryType, DiscoveryType, LbPolicy}, Cluster, OutlierDetection};
///
/// let mut c = Cluster {
///     name: "web".into(),
///     cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
///     lb_policy: LbPolicy::LeastRequest as i32,
///     ..Cluster::default()
/// };
/// let x = proxy_xds::resources::cluster(&c)?;
/// assert_eq!(x.eds_service.as_deref(), Some("web"));
/// assert_eq!(x.config.lb.typed, "least_request");
///
/// c.outlier_detection = Some(OutlierDetection::default());
/// let x = proxy_xds::resources::cluster(&c)?;
/// assert_eq!(x.config.extensions[0].typed, "outlier_detection");
///
/// c.outlier_detection = Some(OutlierDetection { split_external_local_origin_errors: true, ..Default::default() });
/// let err = proxy_xds::resources::cluster(&c).unwrap_err();
/// assert!(err.to_string().starts_with("cluster \"web\": outlier_detection.split_external_local_origin_errors: not supported"));
/// # Ok::<(), proxy_xds::Refusal>(())
/// ```
pub fn cluster(c: &Cluster) -> Result<XdsCluster, Refusal> {
    if c.name.is_empty() {
        return Err(Refusal::new("cluster", "name", "must not be empty"));
    }
    let resource = format!("cluster {:?}", c.name);
    translate(c).map_err(|r| Refusal { resource, ..r })
}

fn translate(c: &Cluster) -> Result<XdsCluster, Refusal> {
    refuse_leftover(&unhandled(c), fields::CLUSTER)?;
    let mut config: ClusterConfig = proxy_core::config::from_value(&json!({
        "name": c.name,
        "endpoints": [],
    }))
    .map_err(|e| Refusal::new("", "name", e))?;
    let mut secrets = std::collections::BTreeSet::new();
    let transport = c
        .transport_socket
        .as_ref()
        .map(super::upstream_tls::transport);
    if let Some((t, names)) = transport
        .transpose()
        .map_err(|r| r.within("transport_socket"))?
        .flatten()
    {
        config.transport = Some(t);
        secrets = names;
    }
    config.connect_timeout = match &c.connect_timeout {
        None => ENVOY_CONNECT_TIMEOUT,
        Some(d) => match duration(d) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                return Err(Refusal::new(
                    "",
                    "connect_timeout",
                    "must be more than zero",
                ))
            }
            Err(e) => return Err(Refusal::new("", "connect_timeout", e)),
        },
    };
    config.lb = super::balancer::balancer(c)?;
    config.circuit_breakers =
        super::circuit_breakers::circuit_breakers(c.circuit_breakers.as_ref())?;
    let mut panic_threshold = ENVOY_PANIC_THRESHOLD;
    if let Some(common) = &c.common_lb_config {
        let mut rest = common.clone();
        rest.healthy_panic_threshold = None;
        rest.update_merge_window = None;
        refuse_leftover(&rest, fields::COMMON_LB_CONFIG)
            .map_err(|r| r.within("common_lb_config"))?;
        if let Some(p) = &common.healthy_panic_threshold {
            if !(0.0..=100.0).contains(&p.value) {
                return Err(Refusal::new(
                    "",
                    "common_lb_config.healthy_panic_threshold",
                    format!("{} is not a percentage (0 to 100)", p.value),
                ));
            }
            panic_threshold = p.value;
        }
    }
    if let Some(o) = &c.outlier_detection {
        let ext = super::outlier::outlier_detection(o, panic_threshold)
            .map_err(|r| r.within("outlier_detection"))?;
        config.extensions.extend(ext);
    }
    config.extensions.extend(super::health_check::health_checks(
        &c.health_checks,
        &c.name,
    )?);
    #[allow(deprecated)]
    if let Some(n) = c.max_requests_per_connection {
        // The deprecated form of the HTTP protocol options' field, which, when set,
        // overrides it below.
        config.pool.max_requests_per_connection = std::num::NonZeroU32::new(n.value);
    }
    #[allow(deprecated)]
    if let Some(h2) = &c.http2_protocol_options {
        refuse_leftover(h2, fields::HTTP2_OPTIONS)
            .map_err(|r| r.within("http2_protocol_options"))?;
        config.protocol = UpstreamProtocol::Http2;
    }
    for (key, any) in &c.typed_extension_protocol_options {
        let path = format!("typed_extension_protocol_options[{key:?}]");
        if key != HTTP_OPTIONS_KEY && any.type_url != HTTP_OPTIONS_TYPE {
            return Err(Refusal::new(
                "",
                path,
                "not supported: only the upstream HTTP protocol options are",
            ));
        }
        let opts: HttpProtocolOptions = super::decode(any, HTTP_OPTIONS_TYPE, "")
            .map_err(|r| Refusal::new("", path.clone(), r.reason))?;
        http_options(&opts, &mut config).map_err(|r| r.within(&path))?;
    }
    let eds_service = match &c.cluster_discovery_type {
        None => None,
        Some(ClusterDiscoveryType::Type(t)) => match DiscoveryType::try_from(*t) {
            Ok(DiscoveryType::Static) => None,
            Ok(DiscoveryType::Eds) => Some(eds_service(c)?),
            Ok(other) => {
                return Err(Refusal::new(
                    "",
                    "type",
                    format!(
                        "{} is not supported (STATIC and EDS are)",
                        other.as_str_name()
                    ),
                ))
            }
            Err(_) => {
                return Err(Refusal::new(
                    "",
                    "type",
                    format!("unknown discovery type {t}"),
                ))
            }
        },
        Some(ClusterDiscoveryType::ClusterType(t)) => {
            return Err(Refusal::new(
                "",
                "cluster_type",
                format!("custom cluster type {:?} is not supported", t.name),
            ))
        }
    };
    if eds_service.is_none() {
        if let Some(cla) = &c.load_assignment {
            config.endpoints = super::load_assignment(cla)
                .map_err(|r| Refusal::new("", r.path, r.reason).within("load_assignment"))?;
        }
    }
    Ok(XdsCluster {
        config,
        eds_service,
        secrets,
    })
}

/// A copy of `c` with every field this module handles or deliberately ignores cleared.
#[allow(deprecated)]
fn unhandled(c: &Cluster) -> Cluster {
    let mut r = c.clone();
    r.name.clear();
    r.cluster_discovery_type = None;
    r.eds_cluster_config = None;
    r.load_assignment = None;
    r.connect_timeout = None;
    r.lb_policy = 0;
    r.lb_config = None;
    r.circuit_breakers = None;
    r.common_lb_config = None;
    r.outlier_detection = None;
    r.health_checks.clear();
    r.http2_protocol_options = None;
    r.max_requests_per_connection = None;
    r.typed_extension_protocol_options.clear();
    r.transport_socket = None;
    // Without effect on how traffic flows here.
    r.alt_stat_name.clear();
    r.stats_matcher = None;
    r.track_cluster_stats = None;
    r.metadata = None;
    r.per_connection_buffer_limit_bytes = None;
    r.preconnect_policy = None;
    r.wait_for_warm_on_init = None;
    r.cleanup_interval = None;
    r.dns_lookup_family = 0;
    r.dns_refresh_rate = None;
    r.dns_jitter = None;
    r.dns_failure_refresh_rate = None;
    r.respect_dns_ttl = false;
    r.dns_resolvers.clear();
    r.use_tcp_for_dns_lookups = false;
    r.dns_resolution_config = None;
    r.typed_dns_resolver_config = None;
    r.track_timeout_budgets = false;
    r.close_connections_on_host_health_failure = false;
    r.ignore_health_on_host_removal = false;
    if r.http_protocol_options == Some(Default::default()) {
        r.http_protocol_options = None;
    }
    r
}

fn eds_service(c: &Cluster) -> Result<String, Refusal> {
    let Some(eds) = &c.eds_cluster_config else {
        return Ok(c.name.clone());
    };
    let EdsClusterConfig {
        eds_config,
        service_name,
    } = eds;
    if let Some(source) = eds_config {
        config_source(source).map_err(|r| r.within("eds_cluster_config.eds_config"))?;
    }
    Ok(if service_name.is_empty() {
        c.name.clone()
    } else {
        service_name.clone()
    })
}

/// Only ADS (or `self`, the same stream) can deliver the endpoints.
pub(super) fn config_source(s: &ConfigSource) -> Result<(), Refusal> {
    match &s.config_source_specifier {
        None | Some(ConfigSourceSpecifier::Ads(_) | ConfigSourceSpecifier::Self_(_)) => {}
        Some(_) => {
            return Err(Refusal::new(
                "",
                "config_source_specifier",
                "only ads (or self) is supported",
            ));
        }
    }
    #[allow(deprecated)]
    let v2 = ApiVersion::V2 as i32;
    if s.resource_api_version == v2 {
        return Err(Refusal::new(
            "",
            "resource_api_version",
            "V2 is not supported",
        ));
    }
    let mut rest = s.clone();
    rest.config_source_specifier = None;
    rest.resource_api_version = 0;
    rest.initial_fetch_timeout = None;
    refuse_leftover(&rest, fields::CONFIG_SOURCE)
}

fn http_options(o: &HttpProtocolOptions, config: &mut ClusterConfig) -> Result<(), Refusal> {
    let mut rest = o.clone();
    rest.upstream_protocol_options = None;
    rest.common_http_protocol_options = None;
    refuse_leftover(&rest, fields::UPSTREAM_HTTP_OPTIONS)?;
    if let Some(common) = &o.common_http_protocol_options {
        let mut rest = *common;
        rest.idle_timeout = None;
        rest.max_requests_per_connection = None;
        refuse_leftover(&rest, fields::COMMON_HTTP_OPTIONS)
            .map_err(|r| r.within("common_http_protocol_options"))?;
        if let Some(n) = common.max_requests_per_connection {
            // Zero is Envoy's "no limit".
            config.pool.max_requests_per_connection = std::num::NonZeroU32::new(n.value);
        }
        if let Some(d) = &common.idle_timeout {
            let d = duration(d)
                .map_err(|e| Refusal::new("", "common_http_protocol_options.idle_timeout", e))?;
            // Zero is Envoy's "no idle timeout": keep connections for a day.
            config.pool.idle_timeout = if d.is_zero() {
                Duration::from_secs(86_400)
            } else {
                d
            };
        }
    }
    match &o.upstream_protocol_options {
        None => {}
        Some(UpstreamProtocolOptions::ExplicitHttpConfig(e)) => match &e.protocol_config {
            None | Some(ProtocolConfig::HttpProtocolOptions(_)) => {
                if let Some(ProtocolConfig::HttpProtocolOptions(h1)) = &e.protocol_config {
                    refuse_leftover(h1, fields::HTTP1_OPTIONS)
                        .map_err(|r| r.within("explicit_http_config.http_protocol_options"))?;
                }
                config.protocol = UpstreamProtocol::Http1;
            }
            Some(ProtocolConfig::Http2ProtocolOptions(h2)) => {
                refuse_leftover(h2, fields::HTTP2_OPTIONS)
                    .map_err(|r| r.within("explicit_http_config.http2_protocol_options"))?;
                config.protocol = UpstreamProtocol::Http2;
            }
            Some(ProtocolConfig::Http3ProtocolOptions(_)) => {
                return Err(Refusal::new(
                    "",
                    "explicit_http_config.http3_protocol_options",
                    "HTTP/3 upstreams are not supported",
                ));
            }
        },
        Some(UpstreamProtocolOptions::UseDownstreamProtocolConfig(_)) => {
            return Err(Refusal::new(
                "",
                "use_downstream_protocol_config",
                "not supported: the upstream protocol is fixed per cluster",
            ));
        }
        Some(UpstreamProtocolOptions::AutoConfig(_)) => {
            return Err(Refusal::new(
                "",
                "auto_config",
                "not supported: the upstream protocol is fixed per cluster",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "cluster_policy_tests.rs"]
mod policy_tests;

#[cfg(test)]
#[path = "cluster_policy_props.rs"]
mod policy_props;
