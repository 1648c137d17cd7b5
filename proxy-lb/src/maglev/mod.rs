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

use serde::{Deserialize, Serialize};

pub use table::{is_prime, MaglevTable};

use crate::{
    hash_balancer::{HashBalancer, HashTable},
    hash_policy::{HashPolicy, HashPolicyConfig},
    ConfigError,
};

/// The largest table size accepted (a prime; Envoy's limit too).
pub const MAX_TABLE_SIZE: u64 = 5_000_011;

/// Config of `maglev`.
///
/// ```yaml
/// lb:
///   typed: maglev
///   config:
///     table_size: 65537        # a prime; at least 100 x the endpoints for even spread
///     hash_policy:
///       - header: {name: x-user-id}
///       - source_ip
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

/// The Maglev balancer: a [`HashBalancer`] over a [`MaglevTable`].
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use http::HeaderName;
/// use proxy_lb::{hash_policy::HashPolicyConfig, maglev::{Maglev, MaglevConfig}, StaticBackend};
///
/// let maglev = Maglev::new(&MaglevConfig {
///     hash_policy: vec![HashPolicyConfig::header(HeaderName::from_static("x-user"))],
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
pub type Maglev = HashBalancer<MaglevTable>;

impl HashBalancer<MaglevTable> {
    /// A balancer from its config, validated.
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
        let policy = HashPolicy::try_new(&config.hash_policy, "hash_policy")?;
        Ok(Self::from_parts(policy, size as u32))
    }
}

impl HashTable for MaglevTable {
    /// The table size (a prime).
    type Params = u32;

    fn build(size: &u32, backends: &[(String, u32)], _previous: Option<&Self>) -> Self {
        MaglevTable::build(backends, *size)
    }

    fn owner(&self, hash: u64) -> Option<usize> {
        self.lookup(hash)
    }

    fn owner_usable(&self, hash: u64, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        self.lookup_usable(hash, usable)
    }
}

impl TryFrom<&MaglevConfig> for Maglev {
    type Error = ConfigError;

    fn try_from(config: &MaglevConfig) -> Result<Self, ConfigError> {
        Self::new(config)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

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
            hash_policy: vec![HashPolicyConfig::SourceIp],
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

    fn from_yaml(yaml: &str) -> Result<Maglev, proxy_core::ConfigError> {
        let section: proxy_core::config::Section = proxy_core::config::from_yaml(yaml)?;
        Ok(Maglev::new(&section.parse()?)?)
    }

    #[test]
    fn config_errors_name_fields() {
        let e = from_yaml("table_size: 65536\nhash_policy: [source_ip]").err();
        assert_eq!(
            e.map(|e| e.to_string()).as_deref(),
            Some("table_size: 65536 is not prime")
        );
        let e = from_yaml("table_size: 18446744073709551557\nhash_policy: [source_ip]").err();
        assert!(e.is_some_and(|e| e.reason.contains("is larger than")));
        let e = from_yaml("hash_policy: []").err();
        assert!(e.is_some_and(|e| e.path == "hash_policy"));
        let e = from_yaml("").err();
        assert_eq!(
            e.map(|e| e.to_string()).as_deref(),
            Some("hash_policy: missing (required)")
        );
        let e = from_yaml("hash_policy: [source_ip]\ntable: 7").err();
        assert!(e.is_some_and(|e| e.reason.contains("table")));
        let e = from_yaml("hash_policy: [{header: {name: x}}, {cookie: {}}]").err();
        assert_eq!(
            e.map(|e| e.path).as_deref(),
            Some("hash_policy[1].cookie.name")
        );
    }
}
