//! Shared pieces of the filters' config sections: parsing with field paths, the
//! percentage type and the lock-free sampler that turns a percentage into decisions.

use std::{
    fmt,
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::ConfigError;

/// Parses a filter's section; a missing section (`null`) is an empty mapping, so
/// every default applies. Enums are one-key maps (`path: { prefix: /api }`), as in
/// the rest of the config. Errors name the field path inside the section.
///
/// # Errors
/// [`ConfigError::Invalid`] naming the field and the reason.
pub fn parse<T: DeserializeOwned>(
    filter: &'static str,
    value: &serde_yaml::Value,
) -> Result<T, ConfigError> {
    let empty = serde_yaml::Value::Mapping(serde_yaml::Mapping::new());
    let value = if value.is_null() { &empty } else { value };
    let mut track = serde_path_to_error::Track::new();
    let result = serde_yaml::with::singleton_map_recursive::deserialize(
        serde_path_to_error::Deserializer::new(value, &mut track),
    );
    result.map_err(|e| {
        let path = track.path().to_string();
        let reason = e.to_string();
        // serde_yaml appends " at line N column M" to some messages; the path says more.
        let reason = reason
            .split(" at line ")
            .next()
            .unwrap_or_default()
            .to_owned();
        ConfigError::Invalid {
            filter,
            path: if path == "." { String::new() } else { path },
            reason,
        }
    })
}

/// Parses a filter's section from YAML text (see [`parse`]).
///
/// # Errors
/// Bad YAML, or [`ConfigError::Invalid`] naming the field.
///
/// # Example
/// ```
/// use proxy_filters::{config::from_yaml, rbac::RbacConfig};
/// let cfg: RbacConfig = from_yaml("rbac", "policies: [{name: a, action: allow, principals: [{any: true}], permissions: [{path: {prefix: /}}]}]").unwrap();
/// assert_eq!(cfg.policies.len(), 1);
/// let err = from_yaml::<RbacConfig>("rbac", "policies: [{name: a, action: allow, principals: [{source_ip: 1.2.3.4/40}], permissions: []}]").unwrap_err();
/// assert!(err.to_string().starts_with("rbac.policies[0].principals[0].source_ip: "), "{err}");
/// ```
pub fn from_yaml<T: DeserializeOwned>(filter: &'static str, text: &str) -> Result<T, ConfigError> {
    let value: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| ConfigError::Invalid {
            filter,
            path: String::new(),
            reason: e.to_string(),
        })?;
    parse(filter, &value)
}

/// Writes a section as YAML the way [`parse`] reads it (enums as one-key maps).
///
/// # Errors
/// A value YAML cannot represent.
pub fn to_yaml<T: Serialize>(value: &T) -> Result<String, serde_yaml::Error> {
    let mut out = Vec::new();
    let mut ser = serde_yaml::Serializer::new(&mut out);
    serde_yaml::with::singleton_map_recursive::serialize(value, &mut ser)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// A percentage from 0 to 100 (fractions allowed: `0.5` is one in two hundred).
/// Values outside that range, NaN included, are refused at load.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Percent(f64);

impl Percent {
    /// Always.
    pub const HUNDRED: Self = Self(100.0);
    /// Never.
    pub const ZERO: Self = Self(0.0);

    /// The percentage as a number from 0 to 100.
    pub fn value(self) -> f64 {
        self.0
    }

    /// Parts per million: the form samplers compare against.
    pub fn per_million(self) -> u32 {
        (self.0 * 10_000.0).round() as u32
    }
}

impl Default for Percent {
    fn default() -> Self {
        Self::HUNDRED
    }
}

impl TryFrom<f64> for Percent {
    type Error = String;

    fn try_from(v: f64) -> Result<Self, String> {
        if (0.0..=100.0).contains(&v) {
            Ok(Self(v))
        } else {
            Err(format!("{v} is not a percentage from 0 to 100"))
        }
    }
}

impl From<Percent> for f64 {
    fn from(p: Percent) -> f64 {
        p.0
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

/// A lock-free pseudo-random source shared by all clones of a layer: one atomic add
/// and a SplitMix64 mix per draw. With a seed the sequence of draws is fixed (tests).
#[derive(Debug)]
pub struct Sampler {
    state: AtomicU64,
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl Sampler {
    /// A sampler seeded with `seed`, or from the clock and address space when `None`.
    pub fn new(seed: Option<u64>) -> Self {
        let seed = seed.unwrap_or_else(|| {
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let local = 0u8;
            t ^ (&local as *const u8 as u64).rotate_left(32)
        });
        Self {
            state: AtomicU64::new(seed),
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(GOLDEN_GAMMA, Ordering::Relaxed)
            .wrapping_add(GOLDEN_GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Draws once: true with probability `per_million / 1_000_000`. Never draws for
    /// 0 or 1,000,000 and above.
    pub fn hit(&self, per_million: u32) -> bool {
        match per_million {
            0 => false,
            p if p >= 1_000_000 => true,
            p => self.next_u64() % 1_000_000 < u64::from(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_bounds() {
        assert!(Percent::try_from(100.0).is_ok());
        assert!(Percent::try_from(0.0).is_ok());
        assert!(Percent::try_from(100.5).is_err());
        assert!(Percent::try_from(-1.0).is_err());
        assert!(Percent::try_from(f64::NAN).is_err());
        assert_eq!(Percent::try_from(12.5).unwrap().per_million(), 125_000);
    }

    #[test]
    fn seeded_sampler_is_repeatable_and_fair() {
        let a = Sampler::new(Some(7));
        let b = Sampler::new(Some(7));
        let hits: usize = (0..10_000).filter(|_| a.hit(250_000)).count();
        let again: usize = (0..10_000).filter(|_| b.hit(250_000)).count();
        assert_eq!(hits, again);
        assert!((2300..2700).contains(&hits), "{hits}");
        assert!(!a.hit(0));
        assert!(a.hit(1_000_000));
    }

    #[test]
    fn parse_names_the_field() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct S {
            inner: Vec<I>,
        }
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct I {
            percentage: Percent,
        }
        let v: serde_yaml::Value =
            serde_yaml::from_str("inner: [{percentage: 5}, {percentage: 150}]").unwrap();
        let e = parse::<S>("fault", &v).unwrap_err().to_string();
        assert!(e.starts_with("fault.inner[1].percentage: 150"), "{e}");
    }
}
