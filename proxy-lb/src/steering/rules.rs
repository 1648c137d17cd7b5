//! Validated steering rules and their matching. Pure: no I/O, no runtime.

use std::sync::{
    atomic::{AtomicU64, Ordering::Relaxed},
    Arc,
};

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::config::{RuleConfig, SteeringConfig, TargetConfig, WeightedName};

/// An error in the `traffic_steering` config, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SteeringConfigError {
    /// A field has a bad value.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field path, e.g. `rules[0].to.groups[1].weight`.
        field: String,
        /// Why the value is refused.
        reason: String,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> SteeringConfigError {
    SteeringConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Where a rule sends a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SteeringTarget {
    /// An endpoint group of the route's cluster.
    Group(Arc<str>),
    /// Another cluster.
    Cluster(Arc<str>),
}

/// A weighted choice of targets.
#[derive(Debug, Clone)]
struct Split {
    targets: Vec<SteeringTarget>,
    cumulative: Vec<u64>,
}

impl Split {
    fn pick(&self, random: u64) -> &SteeringTarget {
        let total = self.cumulative.last().copied().unwrap_or(1).max(1);
        let x = random % total;
        let i = self
            .cumulative
            .partition_point(|&c| c <= x)
            .min(self.targets.len() - 1);
        &self.targets[i]
    }
}

#[derive(Debug, Clone)]
enum PathMatch {
    Exact(Box<str>),
    Prefix(Box<str>),
}

/// One validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    name: Arc<str>,
    headers: Vec<(HeaderName, HeaderValue)>,
    methods: Vec<Method>,
    path: Option<PathMatch>,
    rpc_service: Option<Box<str>>,
    rpc_method: Option<Box<str>>,
    split: Split,
    hits: Arc<AtomicU64>,
}

/// What [`Rule::matches`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request path.
    pub path: &'a str,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The RPC service and method, when a codec set them.
    pub rpc: Option<(&'a str, &'a str)>,
}

impl Rule {
    /// The rule's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Whether every condition holds for `req`.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        if !self.methods.is_empty() && !self.methods.contains(req.method) {
            return false;
        }
        match &self.path {
            Some(PathMatch::Exact(p)) if req.path != &**p => return false,
            Some(PathMatch::Prefix(p)) if !req.path.starts_with(&**p) => return false,
            _ => {}
        }
        if self.rpc_service.is_some() || self.rpc_method.is_some() {
            let Some((service, method)) = req.rpc else {
                return false;
            };
            if self.rpc_service.as_deref().is_some_and(|s| s != service)
                || self.rpc_method.as_deref().is_some_and(|m| m != method)
            {
                return false;
            }
        }
        self.headers
            .iter()
            .all(|(name, value)| req.headers.get_all(name).iter().any(|v| v == value))
    }

    /// The target for a matching request; `random` is uniformly random.
    pub fn target(&self, random: u64) -> &SteeringTarget {
        self.split.pick(random)
    }

    /// Requests this rule matched (counted by the filter).
    pub fn hits(&self) -> u64 {
        self.hits.load(Relaxed)
    }

    pub(crate) fn hit(&self) {
        self.hits.fetch_add(1, Relaxed);
    }
}

/// Validated rules, first match wins.
#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

impl RuleSet {
    /// Validates a config. `cluster_exists` checks cluster targets.
    ///
    /// # Errors
    /// A [`SteeringConfigError`] naming the first bad field: no rules, a rule whose
    /// target is not exactly one of group/groups/cluster/clusters, an empty split, an
    /// empty name, a bad header name or value, an unknown method or cluster.
    pub fn new(
        cfg: &SteeringConfig,
        cluster_exists: impl Fn(&str) -> bool,
    ) -> Result<Self, SteeringConfigError> {
        if cfg.rules.is_empty() {
            return Err(invalid("rules", "at least one rule is required"));
        }
        let rules = cfg
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| rule(i, r, &cluster_exists))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { rules })
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Counts matches in `counters` (shared across reloads, by rule name).
    pub fn count_in(mut self, counters: &super::metrics::SteeringCounters) -> Self {
        for r in &mut self.rules {
            r.hits = counters.rule(&r.name);
        }
        self
    }

    /// The index of the first rule matching `req`.
    pub fn find(&self, req: &RequestView<'_>) -> Option<usize> {
        self.rules.iter().position(|r| r.matches(req))
    }
}

fn rule(
    i: usize,
    r: &RuleConfig,
    cluster_exists: &impl Fn(&str) -> bool,
) -> Result<Rule, SteeringConfigError> {
    let at = |f: &str| format!("rules[{i}].{f}");
    let name: Arc<str> = match &r.name {
        Some(n) if n.is_empty() => return Err(invalid(at("name"), "must not be empty")),
        Some(n) => n.as_str().into(),
        None => format!("rule{i}").into(),
    };
    let mut headers = Vec::with_capacity(r.matches.headers.len());
    for (k, v) in &r.matches.headers {
        let name = HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes())
            .map_err(|_| invalid(at(&format!("match.headers.{k}")), "not a valid header name"))?;
        let value = HeaderValue::from_str(v).map_err(|_| {
            invalid(
                at(&format!("match.headers.{k}")),
                format!("{v:?} is not a valid header value"),
            )
        })?;
        headers.push((name, value));
    }
    let methods = r
        .matches
        .methods
        .iter()
        .enumerate()
        .map(|(j, m)| {
            Method::from_bytes(m.as_bytes()).map_err(|_| {
                invalid(
                    at(&format!("match.methods[{j}]")),
                    format!("bad method {m:?}"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let path = match &r.matches.path {
        None => None,
        Some(pm) => {
            let (p, exact) = match (&pm.exact, &pm.prefix) {
                (Some(p), None) => (p, true),
                (None, Some(p)) => (p, false),
                _ => {
                    return Err(invalid(
                        at("match.path"),
                        "give exactly one of exact, prefix",
                    ))
                }
            };
            if !p.starts_with('/') {
                return Err(invalid(
                    at("match.path"),
                    format!("{p:?} must start with /"),
                ));
            }
            Some(if exact {
                PathMatch::Exact(p.as_str().into())
            } else {
                PathMatch::Prefix(p.as_str().into())
            })
        }
    };
    let (rpc_service, rpc_method) = match &r.matches.rpc {
        Some(rpc) => {
            if rpc.service.is_none() && rpc.method.is_none() {
                return Err(invalid(at("match.rpc"), "give a service, a method or both"));
            }
            (
                rpc.service.as_deref().map(Into::into),
                rpc.method.as_deref().map(Into::into),
            )
        }
        None => (None, None),
    };
    let split = split(&at("to"), &r.to, cluster_exists)?;
    Ok(Rule {
        name,
        headers,
        methods,
        path,
        rpc_service,
        rpc_method,
        split,
        hits: Arc::default(),
    })
}

fn split(
    at: &str,
    to: &TargetConfig,
    cluster_exists: &impl Fn(&str) -> bool,
) -> Result<Split, SteeringConfigError> {
    let given = [
        to.group.is_some(),
        to.groups.is_some(),
        to.cluster.is_some(),
        to.clusters.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if given != 1 {
        return Err(invalid(
            at,
            "give exactly one of group, groups, cluster, clusters",
        ));
    }
    let one = |n: &str| WeightedName {
        name: n.to_owned(),
        weight: std::num::NonZeroU32::MIN,
    };
    let (field, list, is_cluster): (&str, Vec<WeightedName>, bool) = match to {
        TargetConfig { group: Some(g), .. } => ("group", vec![one(g)], false),
        TargetConfig {
            groups: Some(g), ..
        } => ("groups", g.clone(), false),
        TargetConfig {
            cluster: Some(c), ..
        } => ("cluster", vec![one(c)], true),
        TargetConfig {
            clusters: Some(c), ..
        } => ("clusters", c.clone(), true),
        _ => return Err(invalid(at, "no target")),
    };
    if list.is_empty() {
        return Err(invalid(format!("{at}.{field}"), "must not be empty"));
    }
    let mut targets = Vec::with_capacity(list.len());
    let mut cumulative = Vec::with_capacity(list.len());
    let mut total = 0u64;
    for (j, w) in list.iter().enumerate() {
        let f = if matches!(field, "groups" | "clusters") {
            format!("{at}.{field}[{j}].name")
        } else {
            format!("{at}.{field}")
        };
        if w.name.is_empty() {
            return Err(invalid(f, "must not be empty"));
        }
        let target = if is_cluster {
            if !cluster_exists(&w.name) {
                return Err(invalid(f, format!("unknown cluster {}", w.name)));
            }
            SteeringTarget::Cluster(w.name.as_str().into())
        } else {
            SteeringTarget::Group(w.name.as_str().into())
        };
        total += u64::from(w.weight.get());
        targets.push(target);
        cumulative.push(total);
    }
    Ok(Split {
        targets,
        cumulative,
    })
}
