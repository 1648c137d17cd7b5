//! Ring hash (Karger et al. consistent hashing, as in Envoy's `RING_HASH`): every
//! endpoint puts `weight x scale` points on a 64-bit ring at `xxh64("<address>_<n>")`;
//! a key goes to the first point at or after its hash, wrapping around.
//!
//! `scale` (points per unit of weight) is chosen so that the ring has between
//! `min_ring_size` and `max_ring_size` points. A balancer keeps its scale across
//! endpoint set changes while the ring stays between half of `min_ring_size` and
//! `max_ring_size`: points depend only on an endpoint's own address, weight and the
//! scale, so removing an endpoint moves only the keys it owned, and adding one moves
//! only the keys it takes. Past those bounds the ring is rescaled.
//!
//! A key whose endpoint is unhealthy goes to the next point whose endpoint is healthy.

use std::fmt;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh64::xxh64;

use crate::{
    hash_balancer::{HashBalancer, HashTable},
    hash_policy::{HashPolicy, HashPolicyConfig},
    ConfigError,
};

/// The largest ring accepted (points).
pub const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;
/// How many ring points a lookup walks past unhealthy endpoints.
const MAX_WALK: usize = 256;

/// Config of `ring_hash`.
///
/// ```yaml
/// lb:
///   typed: ring_hash
///   config:
///     min_ring_size: 1024
///     max_ring_size: 8388608
///     hash_policy:
///       - cookie: {name: session}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingHashConfig {
    /// Where a request's key comes from; tried in order.
    pub hash_policy: Vec<HashPolicyConfig>,
    /// Fewest points on the ring (more points spread keys closer to the weights).
    #[serde(default = "default_min")]
    pub min_ring_size: u64,
    /// Most points on the ring.
    #[serde(default = "default_max")]
    pub max_ring_size: u64,
}

fn default_min() -> u64 {
    1024
}

fn default_max() -> u64 {
    MAX_RING_SIZE
}

/// A built ring: points sorted by hash, each naming a backend index.
#[derive(Clone, PartialEq, Eq)]
pub struct Ring {
    points: Box<[(u64, u32)]>,
    scale: u64,
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("points", &self.points.len())
            .field("scale", &self.scale)
            .finish()
    }
}

impl Ring {
    /// Builds the ring for backends given as (hash id, weight), with between `min`
    /// and `max` points. `prev_scale` (the scale of the ring this one replaces) is
    /// kept while the new ring stays between `min / 2` and `max` points.
    pub fn build<I: AsRef<[u8]>>(
        backends: &[(I, u32)],
        min: u64,
        max: u64,
        prev_scale: Option<u64>,
    ) -> Self {
        let total: u64 = backends.iter().map(|b| u64::from(b.1)).sum();
        if total == 0 {
            return Self {
                points: Box::new([]),
                scale: 0,
            };
        }
        let fits = |s: u64| {
            let size = s.saturating_mul(total);
            s > 0 && size >= min.div_ceil(2) && size <= max
        };
        let scale = match prev_scale {
            Some(s) if fits(s) => s,
            _ => min.div_ceil(total).max(1).min(max / total),
        };
        if scale > 0 {
            return Self::with_scale(backends, scale);
        }
        // More weight than `max` points: each backend gets its share of `max` (at
        // least one point); proportions are approximate.
        let per = |w: u32| ((u128::from(w) * u128::from(max) / u128::from(total)) as u64).max(1);
        Self::from_counts(backends, |w| if w == 0 { 0 } else { per(w) }, 0)
    }

    /// Builds the ring with exactly `weight x scale` points per backend.
    pub fn with_scale<I: AsRef<[u8]>>(backends: &[(I, u32)], scale: u64) -> Self {
        Self::from_counts(backends, |w| u64::from(w) * scale, scale)
    }

    fn from_counts<I: AsRef<[u8]>>(
        backends: &[(I, u32)],
        count: impl Fn(u32) -> u64,
        scale: u64,
    ) -> Self {
        let total: u64 = backends.iter().map(|b| count(b.1)).sum();
        let mut points = Vec::with_capacity(total.min(MAX_RING_SIZE * 2) as usize);
        // Point n of a backend hashes "<id>_<n>" (n in decimal).
        let mut key = Vec::new();
        for (i, (id, w)) in backends.iter().enumerate() {
            key.clear();
            key.extend_from_slice(id.as_ref());
            key.push(b'_');
            let prefix = key.len();
            for n in 0..count(*w) {
                key.truncate(prefix);
                push_decimal(&mut key, n);
                points.push((xxh64(&key, 0), i as u32));
            }
        }
        points.sort_unstable();
        Self {
            points: points.into(),
            scale,
        }
    }

    /// Points per unit of weight (0 when the ring was squeezed below one each).
    pub fn scale(&self) -> u64 {
        self.scale
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether the ring has no point.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The backend owning `hash`.
    pub fn lookup(&self, hash: u64) -> Option<usize> {
        self.lookup_usable(hash, |_| true)
    }

    /// The backend owning `hash` if `usable`, else the backend of the next point that
    /// is, walking a bounded number of points; `None` past that.
    pub fn lookup_usable(&self, hash: u64, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.points.len();
        if len == 0 {
            return None;
        }
        let p = self.points.partition_point(|pt| pt.0 < hash);
        let start = if p == len { 0 } else { p };
        (0..len.min(MAX_WALK))
            .map(|k| self.points[(start + k) % len].1 as usize)
            .find(|&i| usable(i))
    }
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// The ring hash balancer: a [`HashBalancer`] over a [`Ring`]. A new endpoint set
/// keeps the previous ring's scale where it can, so only the keys of the endpoints
/// that left or came move.
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use proxy_lb::{hash_policy::HashPolicyConfig, ring_hash::{RingHash, RingHashConfig}, StaticBackend};
///
/// let ring = RingHash::new(&RingHashConfig {
///     hash_policy: vec![HashPolicyConfig::query_parameter("uid")],
///     min_ring_size: 1024,
///     max_ring_size: 8 * 1024 * 1024,
/// })?;
/// let backends: Arc<[StaticBackend]> =
///     (0..3).map(|i| StaticBackend::new(format!("10.0.0.{i}:80"), 1)).collect();
/// ring.prepare(&backends);
/// let (req, _) = http::Request::builder().uri("/?uid=7").body(())?.into_parts();
/// assert_eq!(ring.pick_from(&backends, &req), ring.pick_from(&backends, &req));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type RingHash = HashBalancer<Ring>;

impl HashBalancer<Ring> {
    /// A balancer from its config, validated.
    ///
    /// # Errors
    /// Ring sizes out of order or range, an invalid hash policy.
    pub fn new(config: &RingHashConfig) -> Result<Self, ConfigError> {
        let (min, max) = (config.min_ring_size, config.max_ring_size);
        if min == 0 {
            return Err(ConfigError::invalid("min_ring_size", "must be at least 1"));
        }
        if max > MAX_RING_SIZE {
            return Err(ConfigError::invalid(
                "max_ring_size",
                format!("{max} is larger than {MAX_RING_SIZE}"),
            ));
        }
        if min > max {
            return Err(ConfigError::invalid(
                "min_ring_size",
                format!("{min} is larger than max_ring_size {max}"),
            ));
        }
        let policy = HashPolicy::try_new(&config.hash_policy, "hash_policy")?;
        Ok(Self::from_parts(policy, (min, max)))
    }
}

impl HashTable for Ring {
    /// The least and most points on the ring.
    type Params = (u64, u64);

    fn build(
        &(min, max): &(u64, u64),
        backends: &[(String, u32)],
        previous: Option<&Self>,
    ) -> Self {
        Ring::build(backends, min, max, previous.map(Ring::scale))
    }

    fn owner(&self, hash: u64) -> Option<usize> {
        self.lookup(hash)
    }

    fn owner_usable(&self, hash: u64, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        self.lookup_usable(hash, usable)
    }
}

impl TryFrom<&RingHashConfig> for RingHash {
    type Error = ConfigError;

    fn try_from(config: &RingHashConfig) -> Result<Self, ConfigError> {
        Self::new(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal() {
        for n in [0u64, 7, 10, 99, 1234567, u64::MAX] {
            let mut v = b"x_".to_vec();
            push_decimal(&mut v, n);
            assert_eq!(v, format!("x_{n}").into_bytes());
        }
    }

    #[test]
    fn sizes() {
        let b = [("a", 1), ("b", 2)];
        let r = Ring::build(&b, 1024, MAX_RING_SIZE, None);
        assert_eq!(r.scale(), 342);
        assert_eq!(r.len(), 1026);
        let r = Ring::build(&b, 1024, 600, None);
        assert_eq!(r.len(), 600);
        let r = Ring::build(&[("a", 10), ("b", 5)], 1, 3, None);
        assert_eq!(r.len(), 3);
        assert!(Ring::build(&[("a", 0)], 1, 3, None).is_empty());
    }

    #[test]
    fn keeps_scale_within_bounds() {
        let b = [("a", 1), ("b", 1), ("c", 1)];
        let r = Ring::build(&b, 1024, MAX_RING_SIZE, None);
        let r2 = Ring::build(&b[..2], 1024, MAX_RING_SIZE, Some(r.scale()));
        assert_eq!(r2.scale(), r.scale());
        let r3 = Ring::build(&b[..1], 1024, MAX_RING_SIZE, Some(r.scale()));
        assert_eq!(r3.scale(), 1024);
    }

    fn from_yaml(yaml: &str) -> Result<RingHash, proxy_core::ConfigError> {
        let section: proxy_core::config::Section = proxy_core::config::from_yaml(yaml)?;
        Ok(RingHash::new(&section.parse()?)?)
    }

    #[test]
    fn config_errors_name_fields() {
        let e = from_yaml("hash_policy: [source_ip]\nmin_ring_size: 10\nmax_ring_size: 5").err();
        assert!(e.is_some_and(|e| e.path == "min_ring_size"));
        let e = from_yaml("hash_policy: [{cookie: {}}]").err();
        assert_eq!(
            e.map(|e| e.to_string()).as_deref(),
            Some("hash_policy[0].cookie.name: missing (required)")
        );
        let e = from_yaml("hash_policy: [source_ip]\nmax_ring_size: 99999999999").err();
        assert!(e.is_some_and(|e| e.path == "max_ring_size"));
    }
}
