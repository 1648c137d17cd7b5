//! The serde config of the `traffic_steering` filter.

use std::num::NonZeroU32;

use proxy_core::matcher::{HeaderMatch, StringMatch};
use serde::{Deserialize, Serialize};

/// `http_filters[].config` of `typed: traffic_steering`.
///
/// ```yaml
/// rules:
///   - name: transfers
///     match: {headers: [{name: type, value: {exact: transfer}}]}
///     to: {group: Group_2}
///   - name: canary
///     match: {path: {prefix: /api/}}
///     to: {groups: [{name: stable, weight: 95}, {name: canary, weight: 5}]}
///   - name: billing-app
///     match:
///       headers: [{name: x-app, value: {exact: billing}}]
///       rpc: {service: {exact: com.example.Billing}, method: {prefix: charge}}
///     to: {cluster: billing_v2}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SteeringConfig {
    /// Rules, first match wins. A request no rule matches passes unchanged.
    pub rules: Vec<RuleConfig>,
}

/// One rule: conditions (all must hold) and a target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// A name for metrics and the status page; `rule<i>` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The conditions; an empty match matches every request.
    #[serde(rename = "match", default)]
    pub matches: MatchConfig,
    /// Where matching requests go.
    pub to: TargetConfig,
}

/// Request conditions, all of which must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// Header conditions, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatch>,
    /// HTTP methods, any of which matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// The request path (without the query). An `exact` or `prefix` path must start
    /// with `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<StringMatch>,
    /// The RPC service (interface) and method, from the protocol codec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc: Option<proxy_core::matcher::RpcMatch>,
}

/// A rule's target: a one-key map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TargetConfig {
    /// One endpoint group (endpoints with `metadata.group` equal to it):
    /// `{group: Group_2}`.
    Group(String),
    /// Endpoint groups with weights (blue-green, canary):
    /// `{groups: [{name: stable, weight: 95}, {name: canary, weight: 5}]}`.
    Groups(Vec<WeightedName>),
    /// Another cluster (per-application or per-interface redirection):
    /// `{cluster: billing_v2}`.
    Cluster(String),
    /// Clusters with weights.
    Clusters(Vec<WeightedName>),
}

/// A name with a weight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedName {
    /// The group or cluster name.
    pub name: String,
    /// Relative weight (not zero).
    pub weight: NonZeroU32,
}
