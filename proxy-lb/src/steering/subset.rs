//! The metadata-subset balancer (`lb: subset`, also registered as `zone_aware`):
//! honours a [`TargetZone`] and a [`TargetGroup`] in the request extensions by
//! picking, with an inner policy, among the endpoints whose `metadata.zone` /
//! `metadata.group` match.
//!
//! Subsets and one inner balancer per subset are built off the request path, in
//! `endpoints_changed`; a pick is two hash lookups and the inner pick.

use std::{collections::HashMap, sync::Arc};

use arc_swap::ArcSwap;
use proxy_core::{config::TypedConfig, Balancer, Endpoint};
use serde::{Deserialize, Serialize};

use super::TargetGroup;
use crate::{
    least_request::LeastRequest, maglev::Maglev, random::Random, ring_hash::RingHash,
    round_robin::RoundRobin, zone::TargetZone, ConfigError,
};

/// `clusters[].lb.config` of `typed: subset` or `typed: zone_aware`.
///
/// ```yaml
/// lb:
///   typed: zone_aware
///   config:
///     inner: least_request          # or {typed: maglev, config: {...}}
///     fallback: none
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubsetConfig {
    /// The policy used within a subset (and for requests without a target): one of
    /// this crate's balancers (`round_robin`, `random`, `least_request`, `ring_hash`,
    /// `maglev`) with its config, written as `clusters[].lb` is.
    pub inner: TypedConfig,
    /// What happens when the target subset has no healthy endpoint.
    pub fallback: Fallback,
    /// The metadata key matched against [`TargetZone`].
    pub zone_label: String,
    /// The metadata key matched against [`TargetGroup`].
    pub group_label: String,
}

impl Default for SubsetConfig {
    fn default() -> Self {
        Self {
            inner: TypedConfig::named("round_robin"),
            fallback: Fallback::None,
            zone_label: "zone".into(),
            group_label: "group".into(),
        }
    }
}

/// One of this crate's balancers from its name and config section (`inner` of a
/// subset balancer). Counters are not attached: the subset has one inner balancer
/// per subset.
fn inner_balancer(p: &TypedConfig) -> Result<Arc<dyn Balancer>, ConfigError> {
    fn arc<B: Balancer>(b: B) -> Arc<dyn Balancer> {
        Arc::new(b)
    }
    fn section<T: serde::de::DeserializeOwned>(p: &TypedConfig) -> Result<T, ConfigError> {
        p.config
            .parse()
            .map_err(|e| ConfigError::from(e).within("config"))
    }
    let at_config = |e: ConfigError| e.within("config");
    Ok(match p.typed.as_str() {
        "round_robin" => arc(RoundRobin::new(&section(p)?)),
        "random" => arc(Random::new(&section(p)?)),
        "least_request" => arc(LeastRequest::new(&section(p)?).map_err(at_config)?),
        "ring_hash" => arc(RingHash::new(&section(p)?).map_err(at_config)?),
        "maglev" => arc(Maglev::new(&section(p)?).map_err(at_config)?),
        other => {
            return Err(ConfigError::invalid(
                "typed",
                format!(
                    "unknown inner policy {other:?} (round_robin, random, least_request, ring_hash, maglev)"
                ),
            ))
        }
    })
}

/// When the target subset has no healthy endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// No endpoint: the proxy answers 503 `no_endpoints`.
    None,
    /// Any healthy endpoint of the cluster.
    Any,
}

/// A subset key: (zone, group), `None` for any.
type Key = (Option<Arc<str>>, Option<Arc<str>>);

type InnerFactory = Arc<dyn Fn() -> Arc<dyn Balancer> + Send + Sync>;

/// One subset: its endpoints, their positions in the cluster's list, its balancer.
#[derive(Debug)]
struct Part {
    endpoints: Arc<[Arc<Endpoint>]>,
    positions: Box<[usize]>,
    inner: Arc<dyn Balancer>,
}

#[derive(Debug, Default)]
struct Level {
    all: Option<Arc<Part>>,
    groups: HashMap<Arc<str>, Arc<Part>>,
}

/// The subsets of one endpoint set.
#[derive(Debug, Default)]
struct Index {
    /// Identity of the endpoint slice the index was built for.
    key: (usize, usize),
    any: Level,
    zones: HashMap<Arc<str>, Level>,
}

/// The subset balancer.
pub struct Subset {
    zone_label: Arc<str>,
    group_label: Arc<str>,
    fallback: Fallback,
    make_inner: InnerFactory,
    /// The inner balancer over the whole set.
    all: Arc<dyn Balancer>,
    index: ArcSwap<Index>,
    next: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Subset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subset")
            .field("zone_label", &self.zone_label)
            .field("group_label", &self.group_label)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

impl Subset {
    /// A subset balancer whose inner balancers `make_inner` builds (one per subset),
    /// for an inner policy of your own; the labels and fallback of `cfg` are taken
    /// as given and its `inner` is ignored. [`Subset::try_from`] builds the inner
    /// policy `cfg` names.
    pub fn new(
        cfg: &SubsetConfig,
        make_inner: impl Fn() -> Arc<dyn Balancer> + Send + Sync + 'static,
    ) -> Self {
        let make_inner: InnerFactory = Arc::new(make_inner);
        Self {
            zone_label: cfg.zone_label.as_str().into(),
            group_label: cfg.group_label.as_str().into(),
            fallback: cfg.fallback,
            all: make_inner(),
            make_inner,
            index: ArcSwap::from_pointee(Index::default()),
            next: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn build_index(&self, endpoints: &Arc<[Arc<Endpoint>]>) -> Index {
        let old = self.index.load();
        // (zone, group) -> positions; None = any.
        let mut parts: HashMap<Key, Vec<usize>> = HashMap::new();
        for (i, e) in endpoints.iter().enumerate() {
            let zone: Option<Arc<str>> = e.label(&self.zone_label).map(Into::into);
            let group: Option<Arc<str>> = e.label(&self.group_label).map(Into::into);
            let mut keys = vec![(None, None)];
            if let Some(z) = &zone {
                keys.push((Some(z.clone()), None));
            }
            if let Some(g) = &group {
                keys.push((None, Some(g.clone())));
            }
            if let (Some(z), Some(g)) = (&zone, &group) {
                keys.push((Some(z.clone()), Some(g.clone())));
            }
            for k in keys {
                parts.entry(k).or_default().push(i);
            }
        }
        let mut index = Index {
            key: (endpoints.as_ptr() as usize, endpoints.len()),
            ..Index::default()
        };
        for ((zone, group), positions) in parts {
            if zone.is_none() && group.is_none() {
                continue; // the whole set: `self.all`
            }
            let subset: Arc<[Arc<Endpoint>]> =
                positions.iter().map(|&i| endpoints[i].clone()).collect();
            // Keep the inner balancer (and its state) of the same subset.
            let previous = old.lookup(zone.as_deref(), group.as_deref());
            let inner = previous.map_or_else(|| (self.make_inner)(), |p| p.inner.clone());
            inner.endpoints_changed(&subset);
            let part = Arc::new(Part {
                endpoints: subset,
                positions: positions.into_boxed_slice(),
                inner,
            });
            let level = match &zone {
                Some(z) => index.zones.entry(z.clone()).or_default(),
                None => &mut index.any,
            };
            match group {
                Some(g) => {
                    level.groups.insert(g, part);
                }
                None => level.all = Some(part),
            }
        }
        index
    }

    /// A pick without an index for this endpoint slice: rotate over the matching
    /// healthy endpoints.
    fn scan(
        &self,
        endpoints: &[Arc<Endpoint>],
        zone: Option<&str>,
        group: Option<&str>,
    ) -> Option<usize> {
        let fits = |e: &Endpoint| {
            e.is_healthy()
                && zone.is_none_or(|z| e.label(&self.zone_label) == Some(z))
                && group.is_none_or(|g| e.label(&self.group_label) == Some(g))
        };
        let n = endpoints.iter().filter(|e| fits(e)).count();
        if n == 0 {
            return None;
        }
        let k = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % n;
        endpoints
            .iter()
            .enumerate()
            .filter(|(_, e)| fits(e))
            .nth(k)
            .map(|(i, _)| i)
    }
}

impl TryFrom<&SubsetConfig> for Subset {
    type Error = ConfigError;

    /// A subset balancer with the inner policy `cfg` names.
    ///
    /// # Errors
    /// An empty label, an unknown inner policy or a bad inner config (at
    /// `inner.config.<field>`).
    fn try_from(cfg: &SubsetConfig) -> Result<Self, ConfigError> {
        if cfg.zone_label.is_empty() {
            return Err(ConfigError::invalid("zone_label", "must not be empty"));
        }
        if cfg.group_label.is_empty() {
            return Err(ConfigError::invalid("group_label", "must not be empty"));
        }
        // Built once here so that a bad inner config is refused now.
        inner_balancer(&cfg.inner).map_err(|e| e.within("inner"))?;
        let inner = cfg.inner.clone();
        Ok(Self::new(cfg, move || {
            inner_balancer(&inner).unwrap_or_else(|_| Arc::new(RoundRobin::default()))
        }))
    }
}

impl Index {
    fn lookup(&self, zone: Option<&str>, group: Option<&str>) -> Option<&Arc<Part>> {
        let level = match zone {
            Some(z) => self.zones.get(z)?,
            None => &self.any,
        };
        match group {
            Some(g) => level.groups.get(g),
            None => level.all.as_ref(),
        }
    }
}

impl Balancer for Subset {
    fn pick(&self, endpoints: &[Arc<Endpoint>], req: &http::request::Parts) -> Option<usize> {
        let zone = req.extensions.get::<TargetZone>().map(|z| &*z.0);
        let group = req.extensions.get::<TargetGroup>().map(|g| &*g.0);
        if zone.is_none() && group.is_none() {
            return self.all.pick(endpoints, req);
        }
        let index = self.index.load();
        let picked = if index.key == (endpoints.as_ptr() as usize, endpoints.len()) {
            index.lookup(zone, group).and_then(|part| {
                part.inner
                    .pick(&part.endpoints, req)
                    .and_then(|i| part.positions.get(i).copied())
            })
        } else {
            self.scan(endpoints, zone, group)
        };
        match (picked, self.fallback) {
            (Some(i), _) => Some(i),
            (None, Fallback::Any) => self.all.pick(endpoints, req),
            (None, Fallback::None) => None,
        }
    }

    fn endpoints_changed(&self, endpoints: &Arc<[Arc<Endpoint>]>) {
        self.all.endpoints_changed(endpoints);
        let index = self.build_index(endpoints);
        self.index.store(Arc::new(index));
    }

    fn needs_conn_info(&self) -> bool {
        self.all.needs_conn_info()
    }
}
