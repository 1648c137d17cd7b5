//! LDS: the `HttpConnectionManager` network filter into a listener's HTTP settings,
//! its HTTP filters and where its routes come from.

use std::time::Duration;

use envoy_types::pb::{
    envoy::extensions::filters::{
        http::router::v3::Router,
        network::http_connection_manager::v3::{
            http_connection_manager::{
                CodecType, PathWithEscapedSlashesAction, RouteSpecifier, StripPortMode,
            },
            http_filter::ConfigType,
            HttpConnectionManager, HttpFilter,
        },
    },
    google::protobuf::BoolValue,
};
use proxy_core::config::{ByteSize, HttpFilterConfig, ListenerConfig, ListenerProtocol};

use super::{
    duration, fields, fields_http, filter_origins::FilterOrigins, refuse_leftover, XdsRoutes,
};
use crate::Refusal;

/// The name of the HTTP connection manager network filter.
pub const HCM_NAME: &str = "envoy.filters.network.http_connection_manager";
/// The type URL of `HttpConnectionManager`.
pub const HCM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
/// The name of the router HTTP filter.
pub const ROUTER_NAME: &str = "envoy.filters.http.router";
/// The type URL of the router HTTP filter's config.
pub const ROUTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";

/// Envoy's downstream idle timeout when `common_http_protocol_options.idle_timeout`
/// is absent.
const ENVOY_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Envoy's stream idle timeout when `stream_idle_timeout` is absent.
const ENVOY_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Envoy's request header limit when `max_request_headers_kb` is absent.
const ENVOY_MAX_HEADERS_KB: u32 = 60;
/// What Envoy's "0: no timeout" becomes: a day.
const NO_TIMEOUT: Duration = Duration::from_secs(86_400);

/// Where a listener's routes come from.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RouteSource {
    /// An inline `route_config`, already translated.
    Inline(XdsRoutes),
    /// A `RouteConfiguration` by name, over RDS.
    Rds(String),
}

/// Applies an `HttpConnectionManager` to `listener` (protocol, limits, XFF) and
/// returns where its routes come from.
pub(crate) fn http_connection_manager(
    h: &HttpConnectionManager,
    listener: &mut ListenerConfig,
    origins: &mut FilterOrigins,
) -> Result<RouteSource, Refusal> {
    refuse_leftover(&unhandled(h), fields_http::HCM)?;
    listener.protocol = match CodecType::try_from(h.codec_type) {
        Ok(CodecType::Auto) => ListenerProtocol::Auto,
        Ok(CodecType::Http1) => ListenerProtocol::Http1,
        Ok(CodecType::Http2) => ListenerProtocol::Http2,
        Ok(CodecType::Http3) | Err(_) => {
            return Err(Refusal::new(
                "",
                "codec_type",
                "only AUTO, HTTP1 and HTTP2 are supported",
            ))
        }
    };
    let limits = &mut listener.limits;
    limits.idle_timeout = ENVOY_IDLE_TIMEOUT;
    if let Some(common) = &h.common_http_protocol_options {
        let mut rest = *common;
        rest.idle_timeout = None;
        rest.max_headers_count = None;
        refuse_leftover(&rest, fields::COMMON_HTTP_OPTIONS)
            .map_err(|r| r.within("common_http_protocol_options"))?;
        if let Some(d) = &common.idle_timeout {
            limits.idle_timeout = timeout(d, "common_http_protocol_options.idle_timeout")?;
        }
        if let Some(n) = &common.max_headers_count {
            limits.max_headers = n.value;
        }
    }
    if let Some(h1) = &h.http_protocol_options {
        refuse_leftover(h1, fields::HTTP1_OPTIONS)
            .map_err(|r| r.within("http_protocol_options"))?;
    }
    if let Some(h2) = &h.http2_protocol_options {
        let mut rest = h2.clone();
        rest.max_concurrent_streams = None;
        refuse_leftover(&rest, fields::HTTP2_OPTIONS)
            .map_err(|r| r.within("http2_protocol_options"))?;
        if let Some(n) = &h2.max_concurrent_streams {
            limits.h2_max_concurrent_streams = n.value;
        }
    }
    let kb = h
        .max_request_headers_kb
        .as_ref()
        .map_or(ENVOY_MAX_HEADERS_KB, |k| k.value);
    limits.max_header_bytes = ByteSize(u64::from(kb) * 1024);
    limits.stream_idle_timeout = match &h.stream_idle_timeout {
        None => ENVOY_STREAM_IDLE_TIMEOUT,
        Some(d) => timeout(d, "stream_idle_timeout")?,
    };
    if let Some(d) = &h.request_headers_timeout {
        let d = duration(d).map_err(|e| Refusal::new("", "request_headers_timeout", e))?;
        if !d.is_zero() {
            limits.header_read_timeout = d;
        }
    }
    listener.xff = h.use_remote_address.as_ref().is_some_and(|b| b.value) && !h.skip_xff_append;
    listener.via = via_pseudonym(&h.via)?;
    for (i, u) in h.upgrade_configs.iter().enumerate() {
        let mut rest = u.clone();
        rest.upgrade_type.clear();
        if rest.enabled.as_ref().is_some_and(|b| b.value) {
            rest.enabled = None;
        }
        refuse_leftover(&rest, fields_http::UPGRADE_CONFIG)
            .map_err(|r| r.within(&format!("upgrade_configs[{i}]")))?;
    }
    listener.http_filters = http_filters(&h.http_filters, origins)?;
    match &h.route_specifier {
        Some(RouteSpecifier::Rds(rds)) => {
            let mut rest = rds.clone();
            rest.config_source = None;
            rest.route_config_name.clear();
            refuse_leftover(&rest, fields_http::RDS).map_err(|r| r.within("rds"))?;
            if let Some(source) = &rds.config_source {
                super::cluster::config_source(source).map_err(|r| r.within("rds.config_source"))?;
            }
            if rds.route_config_name.is_empty() {
                return Err(Refusal::new(
                    "",
                    "rds.route_config_name",
                    "must not be empty",
                ));
            }
            Ok(RouteSource::Rds(rds.route_config_name.clone()))
        }
        Some(RouteSpecifier::RouteConfig(rc)) => {
            let routes = super::route_configuration(rc)
                .map_err(|r| Refusal::new("", r.path, r.reason).within("route_config"))?;
            Ok(RouteSource::Inline(routes))
        }
        Some(RouteSpecifier::ScopedRoutes(_)) => Err(Refusal::new(
            "",
            "scoped_routes",
            "not supported: it would change behaviour",
        )),
        None => Err(Refusal::new(
            "",
            "route_specifier",
            "rds or route_config is required",
        )),
    }
}

/// The listener's `via` for the HCM's: Envoy adds `via` as given to each request and
/// answer, this proxy names itself after each message's own protocol version (RFC 9110
/// 7.6.3), so both a bare pseudonym (`edge-1`) and a whole entry (`1.1 edge-1`) give
/// the pseudonym. Empty: none.
fn via_pseudonym(via: &str) -> Result<Option<String>, Refusal> {
    let pseudonym = match via.split_ascii_whitespace().collect::<Vec<_>>()[..] {
        [] => return Ok(None),
        [pseudonym] | [_, pseudonym] => pseudonym,
        _ => {
            return Err(Refusal::new(
                "",
                "via",
                "must be a pseudonym (`edge-1`) or one Via entry (`1.1 edge-1`)",
            ))
        }
    };
    proxy_core::proxy::Via::new(pseudonym).map_err(|e| Refusal::new("", "via", e))?;
    Ok(Some(pseudonym.to_owned()))
}

/// A copy of `h` with every field handled here or without effect cleared.
fn unhandled(h: &HttpConnectionManager) -> HttpConnectionManager {
    let mut r = h.clone();
    r.codec_type = 0;
    r.route_specifier = None;
    r.http_filters.clear();
    r.common_http_protocol_options = None;
    r.http_protocol_options = None;
    r.http2_protocol_options = None;
    r.max_request_headers_kb = None;
    r.stream_idle_timeout = None;
    r.request_headers_timeout = None;
    r.use_remote_address = None;
    r.skip_xff_append = false;
    r.via.clear();
    r.upgrade_configs.clear();
    let off = |b: &Option<BoolValue>| b.as_ref().is_some_and(|b| !b.value);
    if off(&r.normalize_path) {
        r.normalize_path = None;
    }
    if r.path_with_escaped_slashes_action == PathWithEscapedSlashesAction::KeepUnchanged as i32 {
        r.path_with_escaped_slashes_action = 0;
    }
    // The Host header's port is always ignored here: both modes are what happens.
    r.strip_matching_host_port = false;
    if matches!(r.strip_port_mode, Some(StripPortMode::StripAnyHostPort(_))) {
        r.strip_port_mode = None;
    }
    // Without effect on how requests are routed and answered here.
    r.stat_prefix.clear();
    r.generate_request_id = None;
    r.preserve_external_request_id = false;
    r.drain_timeout = None;
    r.drain_timeout_jitter = None;
    r.delayed_close_timeout = None;
    r.internal_address_config = None;
    r.stream_error_on_invalid_http_message = None;
    r.server_header_transformation = 0;
    r.add_proxy_protocol_connection_state = None;
    r
}

/// A duration where Envoy's 0 means "none".
fn timeout(
    d: &envoy_types::pb::google::protobuf::Duration,
    field: &str,
) -> Result<Duration, Refusal> {
    let d = duration(d).map_err(|e| Refusal::new("", field, e))?;
    Ok(if d.is_zero() { NO_TIMEOUT } else { d })
}

/// The HTTP filters, in order, as the listener's `http_filters`; the router last
/// and once. Each other filter is one this proxy implements: by its Envoy type URL
/// where an equivalent exists (RBAC, local rate limit, JWT authentication, Lua) or
/// as a `TypedStruct` whose `type_url` is `type.googleapis.com/proxy.filters.<name>`
/// (or the bare `<name>`) and whose `value` is the filter's section, validated by
/// the registry when the config is applied and then refused at
/// `http_filters[i].typed_config.value` and the registry's path (see
/// [`super::http_filters`], `filter_origins` and the crate's README). A disabled filter (it could only be enabled per route, which
/// this proxy cannot express) and an optional one of a type this proxy does not
/// know are left out, as Envoy allows; any other is refused at
/// `http_filters[i].typed_config` and the path inside it.
fn http_filters(
    filters: &[HttpFilter],
    origins: &mut FilterOrigins,
) -> Result<Vec<HttpFilterConfig>, Refusal> {
    let mut router = None;
    let mut out: Vec<HttpFilterConfig> = Vec::new();
    for (i, f) in filters.iter().enumerate() {
        let at = format!("http_filters[{i}]");
        let typed = match &f.config_type {
            Some(ConfigType::TypedConfig(any)) => Some(any),
            Some(ConfigType::ConfigDiscovery(_)) => {
                return Err(Refusal::new(
                    "",
                    format!("{at}.config_discovery"),
                    "not supported: filter configs come inline",
                ))
            }
            None => None,
        };
        let is_router = f.name == ROUTER_NAME || typed.is_some_and(|a| a.type_url == ROUTER_TYPE);
        if !is_router {
            if let Some(r) = router {
                if f.is_optional || f.disabled {
                    continue;
                }
                return Err(Refusal::new(
                    "",
                    format!("http_filters[{r}]"),
                    "the router must be the last filter",
                ));
            }
            let Some(any) = typed else {
                // A disabled filter without a config could only be enabled per route
                // with a config of its own: left out, as before.
                if f.is_optional || f.disabled {
                    continue;
                }
                return Err(Refusal::new(
                    "",
                    format!("{at}.typed_config"),
                    format!("{:?}: a typed_config is required", f.name),
                ));
            };
            let mapped = super::http_filters::http_filter(any);
            match mapped {
                Ok(Some(filter)) => {
                    // Routes override the filter by its HCM name (typed_per_filter_config).
                    let name = (!f.name.is_empty()).then(|| f.name.clone());
                    let mut entry = HttpFilterConfig::from(filter);
                    if let Some(name) = name {
                        entry = entry.named(name);
                    }
                    if out.iter().any(|o| o.name() == entry.name()) {
                        return Err(Refusal::new(
                            "",
                            format!("{at}.name"),
                            format!("{:?}: another HTTP filter has this name", entry.name()),
                        ));
                    }
                    // Off but on routes whose typed_per_filter_config turns it on.
                    entry.disabled = f.disabled;
                    origins.add(
                        format!("http_filters[{}]", out.len()),
                        format!("{at}.typed_config"),
                        super::typed_struct::is_typed_struct(any),
                    );
                    out.push(entry);
                }
                Ok(None) => {
                    tracing::debug!(filter = %f.name, "xds: HTTP filter enforcing nothing left out");
                }
                Err(r) if (f.is_optional || f.disabled) && r.path == "type_url" => {
                    tracing::debug!(filter = %f.name, "xds: optional or disabled HTTP filter of an unknown type left out");
                }
                Err(r) => return Err(r.within(&format!("{at}.typed_config"))),
            }
            continue;
        }
        if f.disabled {
            return Err(Refusal::new(
                "",
                format!("{at}.disabled"),
                "the router cannot be disabled",
            ));
        }
        if let Some(any) = typed {
            let r: Router = super::decode(any, ROUTER_TYPE, "")
                .map_err(|r| Refusal::new("", format!("{at}.typed_config"), r.reason))?;
            let mut rest = r.clone();
            #[allow(deprecated)]
            {
                rest.start_child_span = false;
            }
            // Statistics, tracing and Envoy's own x-envoy-* headers only.
            rest.dynamic_stats = None;
            rest.suppress_envoy_headers = false;
            rest.suppress_grpc_request_failure_code_stats = false;
            refuse_leftover(&rest, fields_http::ROUTER)
                .map_err(|r| r.within(&format!("{at}.typed_config")))?;
        }
        if router.replace(i).is_some() {
            return Err(Refusal::new("", at, "the router appears twice"));
        }
    }
    match router {
        Some(_) => Ok(out),
        None => Err(Refusal::new(
            "",
            "http_filters",
            format!("{ROUTER_NAME} is required"),
        )),
    }
}
