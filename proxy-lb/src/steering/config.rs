//! The serde config of the `traffic_steering` filter.

use std::{collections::BTreeMap, num::NonZeroU32};

use serde::{Deserialize, Serialize};

/// `http_filters[].config` of `typed: traffic_steering`.
///
/// ```yaml
/// rules:
///   - name: transfers
///     match: {headers: {type: transfer}}
///     to: {group: Group_2}
///   - name: canary
///     match: {path: {prefix: /api/}}
///     to: {groups: [{name: stable, weight: 95}, {name: canary, weight: 5}]}
///   - name: billing-app
///     match: {headers: {x-app: billing}, rpc: {service: com.example.Billing}}
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
    #[serde(default)]
    pub name: Option<String>,
    /// The conditions; an empty match matches every request.
    #[serde(rename = "match")]
    pub matches: MatchConfig,
    /// Where matching requests go.
    pub to: TargetConfig,
}

/// Request conditions, all of which must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// Header name -> exact value.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// HTTP methods, any of which matches.
    #[serde(default)]
    pub methods: Vec<String>,
    /// The request path.
    #[serde(default)]
    pub path: Option<PathMatchConfig>,
    /// The RPC service (interface) and method, from the protocol codec.
    #[serde(default)]
    pub rpc: Option<RpcMatchConfig>,
}

/// A path condition: exactly one of the two.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathMatchConfig {
    /// The whole path.
    #[serde(default)]
    pub exact: Option<String>,
    /// A path prefix.
    #[serde(default)]
    pub prefix: Option<String>,
}

/// An RPC condition: the service (interface) and, optionally, the method.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RpcMatchConfig {
    /// The service or interface name.
    #[serde(default)]
    pub service: Option<String>,
    /// The method name.
    #[serde(default)]
    pub method: Option<String>,
}

/// A rule's target: exactly one of the four fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// One endpoint group (endpoints with `metadata.group` equal to it).
    #[serde(default)]
    pub group: Option<String>,
    /// Endpoint groups with weights (blue-green, canary).
    #[serde(default)]
    pub groups: Option<Vec<WeightedName>>,
    /// Another cluster (per-application or per-interface redirection).
    #[serde(default)]
    pub cluster: Option<String>,
    /// Clusters with weights.
    #[serde(default)]
    pub clusters: Option<Vec<WeightedName>>,
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
