//! Virtual hosts and routes: matching, header rewrites, retry policy.

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};

use super::TypedConfig;
use crate::config::Section;

/// A virtual host: the routes that serve a set of domains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualHostConfig {
    /// Name used in metrics and config dumps.
    pub name: String,
    /// Host names served: exact (`api.example.com`), suffix wildcard (`*.example.com`),
    /// prefix wildcard (`api.*`) or `*` for any. The port of the Host header is ignored.
    pub domains: Vec<String>,
    /// Routes, tried in order; the first that matches wins.
    pub routes: Vec<RouteConfig>,
    /// Changes to the listener's `http_filters` for every route of this host, by the
    /// filter's name; a route's own entry for the same filter wins.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub filter_overrides: BTreeMap<String, FilterOverride>,
}

/// One route: a match and what to do with matching requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Name used in metrics labels; defaults to `<vhost>/<index>`.
    #[serde(default)]
    pub name: Option<String>,
    /// What a request must look like.
    #[serde(rename = "match")]
    pub matcher: RouteMatchConfig,
    /// The cluster that serves matching requests.
    pub cluster: String,
    /// Whole-request timeout including retries; no timeout when absent.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Retry policy; no retries when absent.
    #[serde(default)]
    pub retry: Option<RetryPolicyConfig>,
    /// Replace the matched path prefix with this one (prefix matches only).
    #[serde(default)]
    pub prefix_rewrite: Option<String>,
    /// Replace the Host / `:authority` sent upstream.
    #[serde(default)]
    pub host_rewrite: Option<String>,
    /// Headers added to the request sent upstream.
    #[serde(default)]
    pub request_headers_to_add: Vec<HeaderValueConfig>,
    /// Headers removed from the request sent upstream.
    #[serde(default)]
    pub request_headers_to_remove: Vec<String>,
    /// Headers added to the response sent downstream.
    #[serde(default)]
    pub response_headers_to_add: Vec<HeaderValueConfig>,
    /// Headers removed from the response sent downstream.
    #[serde(default)]
    pub response_headers_to_remove: Vec<String>,
    /// Filters for this route only, run after the listener's `http_filters` once the
    /// route is matched; the same registered factories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<TypedConfig>,
    /// Changes to the listener's `http_filters` for this route, by the filter's name
    /// (`jwt: disabled`, `rbac: {config: {...}}`); they win over the virtual host's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub filter_overrides: BTreeMap<String, FilterOverride>,
}

impl RouteConfig {
    /// Overrides the listener's HTTP filter named `filter` for this route.
    ///
    /// # Example
    /// ```
    /// use proxy_core::config::{FilterOverride, RouteConfig};
    ///
    /// let health = RouteConfig::new("app")
    ///     .prefix("/health")
    ///     .override_filter("jwt", FilterOverride::Disabled);
    /// assert_eq!(health.filter_overrides["jwt"], FilterOverride::Disabled);
    /// ```
    #[must_use]
    pub fn override_filter(mut self, filter: impl Into<String>, how: FilterOverride) -> Self {
        self.filter_overrides.insert(filter.into(), how);
        self
    }
}

impl VirtualHostConfig {
    /// Overrides the listener's HTTP filter named `filter` for every route of this
    /// host (a route's own override of it wins).
    ///
    /// # Example
    /// ```
    /// use proxy_core::config::{FilterOverride, RouteConfig, Section, VirtualHostConfig};
    ///
    /// let internal = VirtualHostConfig::new("internal", ["internal.example.com"])
    ///     .override_filter("jwt", FilterOverride::Disabled)
    ///     .route(RouteConfig::new("app").override_filter(
    ///         "rbac",
    ///         FilterOverride::Config(Section::from_value(serde_json::json!({"policies": []}))),
    ///     ));
    /// assert_eq!(internal.filter_overrides["jwt"], FilterOverride::Disabled);
    /// ```
    #[must_use]
    pub fn override_filter(mut self, filter: impl Into<String>, how: FilterOverride) -> Self {
        self.filter_overrides.insert(filter.into(), how);
        self
    }
}

/// What a route (or virtual host) does with one of its listener's HTTP filters,
/// named by the filter entry's `name` (Envoy's `typed_per_filter_config`).
///
/// Written `disabled`, `enabled`, or `{config: {...}}` (the filter runs with this
/// config instead of the listener's, on this route only).
#[derive(Debug, Clone, PartialEq)]
pub enum FilterOverride {
    /// The filter does not run for this route.
    Disabled,
    /// The filter runs for this route with the listener's config, even when the
    /// listener entry is `disabled`.
    Enabled,
    /// The filter runs for this route with this config instead of the listener's
    /// (even when the listener entry is `disabled`).
    Config(Section),
}

/// The map form of [`FilterOverride::Config`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplaceRepr {
    config: Section,
}

impl Serialize for FilterOverride {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Disabled => s.serialize_str("disabled"),
            Self::Enabled => s.serialize_str("enabled"),
            Self::Config(config) => ReplaceRepr {
                config: config.clone(),
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for FilterOverride {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = FilterOverride;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("disabled, enabled, or {config: {...}}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "disabled" => Ok(FilterOverride::Disabled),
                    "enabled" => Ok(FilterOverride::Enabled),
                    other => Err(E::custom(format_args!(
                        "{other:?}: expected disabled, enabled, or {{config: {{...}}}}"
                    ))),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                let r =
                    ReplaceRepr::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(FilterOverride::Config(r.config))
            }
        }
        d.deserialize_any(Visit)
    }
}

/// The match part of a route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatchConfig {
    /// How the path must match; any path when absent.
    #[serde(default)]
    pub path: Option<PathMatchConfig>,
    /// Allowed methods; any method when empty.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Header conditions, all of which must hold.
    #[serde(default)]
    pub headers: Vec<crate::matcher::HeaderMatch>,
}

/// How a path must match. Query strings are not part of the path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PathMatchConfig {
    /// The path equals this string.
    Exact(String),
    /// The path starts with this string.
    Prefix(String),
    /// The whole path matches this regular expression.
    Regex(String),
}

/// A header to add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderValueConfig {
    /// Header name.
    pub name: String,
    /// Header value.
    pub value: String,
    /// Append to existing values instead of replacing them.
    #[serde(default)]
    pub append: bool,
}

/// When and how often to retry a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicyConfig {
    /// Retries after the first attempt.
    pub attempts: u32,
    /// Conditions that make a retry worth trying.
    #[serde(default = "default_retry_on")]
    pub retry_on: Vec<RetryOn>,
    /// Timeout of each attempt; the route timeout bounds the total.
    #[serde(default, with = "humantime_serde")]
    pub per_try_timeout: Option<Duration>,
}

fn default_retry_on() -> Vec<RetryOn> {
    vec![RetryOn::ConnectFailure, RetryOn::Reset]
}

/// A condition under which a request may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryOn {
    /// The upstream connection could not be made (the request never left).
    ConnectFailure,
    /// The upstream reset the connection before answering, or answered with
    /// something its protocol does not allow (`upstream_protocol_error`).
    Reset,
    /// The upstream answered 5xx.
    #[serde(rename = "5xx")]
    ServerError,
    /// The upstream answered 502, 503 or 504.
    GatewayError,
    /// An attempt timed out (`per_try_timeout`).
    PerTryTimeout,
}
