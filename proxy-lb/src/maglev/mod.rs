//! Maglev consistent hashing: a lookup table of `table_size` slots (a prime, default
//! 65537) built from the endpoints' addresses and weights, so a key always maps to
//! the same endpoint and an endpoint set change moves few keys.
//!
//! The table is built when the endpoint set changes (off the request path) and
//! published with `arc-swap`; a pick is one hash and one array index. A key whose
//! endpoint is unhealthy goes to the endpoint of the next slot that is healthy. A
//! request without a key (see [`crate::hash_policy`]) goes to a weighted random
//! endpoint.

mod table;

use std::sync::Arc;

use http::request::Parts;
use proxy_core::{Balancer, Endpoint};
use serde::{Deserialize, Serialize};

pub use table::{is_prime, MaglevTable};

use crate::{
    backend::hash_ids,
    config,
    hash_policy::{HashPolicy, HashPolicyConfig},
    metrics::{HashPick, HashPickCounters},
    table::{locate, TableCell},
    Backend, ConfigError,
};

/// The largest table size accepted (a prime; Envoy's limit too).
pub const MAX_TABLE_SIZE: u64 = 5_000_011;

/// Config of `maglev`.
///
/// ```yaml
/// lb:
///   policy: maglev
///   config:
///     table_size: 65537        # a prime; at least 100 x the endpoints for even spread
///     hash_policy:
///       - type: header
///         name: x-user-id
///       - type: source_ip
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaglevConfig {
    /// Where a request's key comes from; tried in order.
    pub hash_policy: Vec<HashPolicyConfig>,
    /// Slots in the lookup table: a prime.
    #[serde(default = "default_table_size")]
    pub table_size: u64,
}

fn default_table_size() -> u64 {
    65537
}

/// The Maglev balancer.
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use proxy_lb::{hash_policy::HashPolicyConfig, maglev::{Maglev, MaglevConfig}, StaticBackend};
///
/// let maglev = Maglev::new(&MaglevConfig {
///     hash_policy: vec![HashPolicyConfig::Header { name: "x-user".into() }],
///     table_size: 65537,
/// })?;
/// let backends: Arc<[StaticBackend]> =
///     (0..10).map(|i| StaticBackend::new(format!("10.0.0.{i}:80"), 1)).collect();
/// maglev.prepare(&backends);
/// let (req, _) = http::Request::builder().header("x-user", "ann").body(())?.into_parts();
/// let first = maglev.pick_from(&backends, &req);
/// assert!(first.is_some());
/// assert_eq!(maglev.pick_from(&backends, &req), first);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Maglev {
    policy: HashPolicy,
    size: u32,
    table: TableCell<MaglevTable>,
    counters: Option<Arc<HashPickCounters>>,
}

impl Maglev {
    /// A balancer from a validated config.
    ///
    /// # Errors
    /// A table size that is not prime or too large, an invalid hash policy.
    pub fn new(config: &MaglevConfig) -> Result<Self, ConfigError> {
        let size = config.table_size;
        // The bound first: trial division of a huge number would take long.
        if size > MAX_TABLE_SIZE {
            return Err(ConfigError::invalid(
                "table_size",
                format!("{size} is larger than {MAX_TABLE_SIZE}"),
            ));
        }
        if !is_prime(size) {
            return Err(ConfigError::invalid(
                "table_size",
                format!("{size} is not prime"),
            ));
        }
        Ok(Self {
            policy: HashPolicy::try_new(&config.hash_policy, "hash_policy")?,
            size: size as u32,
            table: TableCell::default(),
            counters: None,
        })
    }

    /// A balancer from its YAML section.
    ///
    /// # Errors
    /// A malformed section or an invalid value, naming the field.
    pub fn from_yaml(section: &serde_yaml::Value) -> Result<Self, ConfigError> {
        Self::new(&config::parse::<MaglevConfig>(section)?)
    }

    /// The hash policy.
    pub fn hash_policy(&self) -> &HashPolicy {
        &self.policy
    }

    /// Builds the table of a new endpoint set, off the request path.
    pub fn prepare<B: Backend + Send + Sync + 'static>(&self, backends: &Arc<[B]>) {
        let size = self.size;
        self.table.publish(backends, |b, _| build(b, size));
    }

    /// The current table (for inspection), if one was built.
    pub fn table(&self) -> Option<MaglevTable> {
        self.table.current().map(|b| b.table.clone())
    }

    /// Counts this balancer's picks in `counters` (see [`crate::metrics`]).
    pub fn with_counters(mut self, counters: Arc<HashPickCounters>) -> Self {
        self.counters = Some(counters);
        self
    }

    /// The backend for the request's key, or a weighted random one without a key.
    pub fn pick_from<B: Backend>(&self, backends: &[B], req: &Parts) -> Option<usize> {
        let (pick, how) = match self.policy.hash(req) {
            Some(hash) => self.locate(backends, hash),
            None => match crate::random::pick_weighted(backends) {
                Some(i) => (Some(i), HashPick::NoKey),
                None => (None, HashPick::None),
            },
        };
        if let Some(c) = &self.counters {
            c.record(how);
        }
        pick
    }

    /// The healthy backend owning `hash`.
    pub fn pick_hash<B: Backend>(&self, backends: &[B], hash: u64) -> Option<usize> {
        self.locate(backends, hash).0
    }

    fn locate<B: Backend>(&self, backends: &[B], hash: u64) -> (Option<usize>, HashPick) {
        let size = self.size;
        self.table.with(
            backends,
            |b, _| build(b, size),
            |table| locate(table, backends, hash),
        )
    }
}

fn build<B: Backend>(backends: &[B], size: u32) -> MaglevTable {
    let ids: Vec<(String, u32)> = hash_ids(backends)
        .into_iter()
        .zip(backends.iter().map(|b| b.weight()))
        .collect();
    MaglevTable::build(&ids, size)
}

impl TryFrom<&MaglevConfig> for Maglev {
    type Error = ConfigError;

    fn try_from(config: &MaglevConfig) -> Result<Self, ConfigError> {
        Self::new(config)
    }
}

impl Balancer for Maglev {
    fn pick(&self, endpoints: &[Arc<Endpoint>], req: &Parts) -> Option<usize> {
        self.pick_from(endpoints, req)
    }

    fn endpoints_changed(&self, endpoints: &Arc<[Arc<Endpoint>]>) {
        self.prepare(endpoints);
    }

    fn needs_conn_info(&self) -> bool {
        self.policy.needs_conn_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StaticBackend;

    fn set(n: usize) -> Arc<[StaticBackend]> {
        (0..n)
            .map(|i| StaticBackend::new(format!("b{i}"), 1))
            .collect()
    }

    #[test]
    fn older_set_keeps_its_table_after_a_swap() {
        let m = Maglev::new(&MaglevConfig {
            hash_policy: vec![HashPolicyConfig::SourceIp {}],
            table_size: 251,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let (a, b, c) = (set(5), set(4), set(3));
        m.prepare(&a);
        let table_a = m.table().unwrap_or_else(|| panic!("no table"));
        let before: Vec<_> = (0..300).map(|k| m.pick_hash(&a, k)).collect();
        let want: Vec<_> = (0..300).map(|k| table_a.lookup(k)).collect();
        assert_eq!(before, want);
        m.prepare(&b);
        // In-flight requests on the older set keep its mapping.
        let after: Vec<_> = (0..300).map(|k| m.pick_hash(&a, k)).collect();
        assert_eq!(before, after);
        // A set with no table falls back, still consistently.
        let x: Vec<_> = (0..300).map(|k| m.pick_hash(&c, k)).collect();
        let y: Vec<_> = (0..300).map(|k| m.pick_hash(&c, k)).collect();
        assert_eq!(x, y);
        assert!(x.iter().all(|i| i.is_some_and(|i| i < 3)));
    }

    #[test]
    fn config_errors_name_fields() {
        let v: serde_yaml::Value =
            serde_yaml::from_str("table_size: 65536\nhash_policy: [{type: source_ip}]")
                .unwrap_or_default();
        let e = Maglev::from_yaml(&v).err().map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("table_size: 65536 is not prime"));
        let v: serde_yaml::Value = serde_yaml::from_str(
            "table_size: 18446744073709551557\nhash_policy: [{type: source_ip}]",
        )
        .unwrap_or_default();
        let e = Maglev::from_yaml(&v).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("is larger than")));
        let v: serde_yaml::Value = serde_yaml::from_str("hash_policy: []").unwrap_or_default();
        let e = Maglev::from_yaml(&v).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.starts_with("hash_policy: ")));
        let e = Maglev::from_yaml(&serde_yaml::Value::Null).err();
        assert!(e.is_some());
        let v: serde_yaml::Value =
            serde_yaml::from_str("hash_policy: [{type: source_ip}]\ntable: 7").unwrap_or_default();
        assert!(Maglev::from_yaml(&v).is_err());
    }
}
