//! Validated steering rules and their matching. Pure: no I/O, no runtime.

use std::sync::{
    atomic::{AtomicU64, Ordering::Relaxed},
    Arc,
};

use http::{HeaderMap, Method};
use proxy_core::matcher::{HeaderMatch, StringMatch};

use super::config::{RuleConfig, SteeringConfig, TargetConfig, WeightedName};
use crate::ConfigError;

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::invalid(field, reason)
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

/// One validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    name: Arc<str>,
    headers: Vec<HeaderMatch>,
    methods: Vec<Method>,
    path: Option<StringMatch>,
    rpc_service: Option<StringMatch>,
    rpc_method: Option<StringMatch>,
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
    /// The authority the request's target names (HTTP/2's `:authority`), which a
    /// header condition on `host` sees in place of the Host field.
    pub authority: Option<&'a str>,
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
        if self.path.as_ref().is_some_and(|p| !p.matches(req.path)) {
            return false;
        }
        if self.rpc_service.is_some() || self.rpc_method.is_some() {
            let Some((service, method)) = req.rpc else {
                return false;
            };
            if self
                .rpc_service
                .as_ref()
                .is_some_and(|s| !s.matches(service))
                || self.rpc_method.as_ref().is_some_and(|m| !m.matches(method))
            {
                return false;
            }
        }
        self.headers
            .iter()
            .all(|h| h.matches_request(req.headers, req.authority))
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
    /// A [`ConfigError`] naming the first bad field: no rules, an empty split, an
    /// empty name, an exact or prefix path not starting with `/`, an RPC condition
    /// with neither service nor method, a bad method, an unknown cluster.
    pub fn new(
        cfg: &SteeringConfig,
        cluster_exists: impl Fn(&str) -> bool,
    ) -> Result<Self, ConfigError> {
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
) -> Result<Rule, ConfigError> {
    let at = |f: &str| format!("rules[{i}].{f}");
    let name: Arc<str> = match &r.name {
        Some(n) if n.is_empty() => return Err(invalid(at("name"), "must not be empty")),
        Some(n) => n.as_str().into(),
        None => format!("rule{i}").into(),
    };
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
    let literal_path = match &r.matches.path {
        Some(StringMatch::Exact(p)) => Some(("exact", p)),
        Some(StringMatch::Prefix(p)) => Some(("prefix", p)),
        _ => None,
    };
    if let Some((kind, p)) = literal_path.filter(|(_, p)| !p.starts_with('/')) {
        return Err(invalid(
            at(&format!("match.path.{kind}")),
            format!("{p:?} must start with /"),
        ));
    }
    let (rpc_service, rpc_method) = match &r.matches.rpc {
        Some(rpc) => {
            if rpc.service.is_none() && rpc.method.is_none() {
                return Err(invalid(at("match.rpc"), "give a service, a method or both"));
            }
            (rpc.service.clone(), rpc.method.clone())
        }
        None => (None, None),
    };
    let split = split(&at("to"), &r.to, cluster_exists)?;
    Ok(Rule {
        name,
        headers: r.matches.headers.clone(),
        methods,
        path: r.matches.path.clone(),
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
) -> Result<Split, ConfigError> {
    let one = |n: &str| {
        vec![WeightedName {
            name: n.to_owned(),
            weight: std::num::NonZeroU32::MIN,
        }]
    };
    let (field, list, is_cluster): (&str, Vec<WeightedName>, bool) = match to {
        TargetConfig::Group(g) => ("group", one(g), false),
        TargetConfig::Groups(g) => ("groups", g.clone(), false),
        TargetConfig::Cluster(c) => ("cluster", one(c), true),
        TargetConfig::Clusters(c) => ("clusters", c.clone(), true),
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
