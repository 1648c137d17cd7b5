//! The value types of the config convention: shares as `*_percent` (0-100) and
//! sizes as `*_bytes` (a number, or a string with a unit: `64KiB`, `1MB`).
//! Durations are humantime strings (`250ms`, `2s`), read with `humantime_serde`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A share from 0 to 100 (fractions allowed: `0.5` is one in two hundred). Values
/// outside that range, NaN included, are refused at load. Written in fields named
/// `*_percent`.
///
/// # Example
/// ```
/// use proxy_core::config::Percent;
/// let p: Percent = proxy_core::config::from_yaml("12.5").unwrap();
/// assert_eq!(p.per_million(), 125_000);
/// assert!(proxy_core::config::from_yaml::<Percent>("101").is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Percent(f64);

impl Percent {
    /// Always.
    pub const HUNDRED: Self = Self(100.0);
    /// Never.
    pub const ZERO: Self = Self(0.0);

    /// `v` clamped to 0-100 (NaN is 0): for defaults written in code.
    pub const fn clamped(v: f64) -> Self {
        if v.is_nan() || v < 0.0 {
            Self(0.0)
        } else if v > 100.0 {
            Self(100.0)
        } else {
            Self(v)
        }
    }

    /// The percentage as a number from 0 to 100.
    pub fn value(self) -> f64 {
        self.0
    }

    /// The share as a fraction from 0 to 1.
    pub fn fraction(self) -> f64 {
        self.0 / 100.0
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

/// A size in bytes: a number (`65536`) or a string with a unit, decimal (`kB`, `MB`,
/// `GB`) or binary (`KiB`, `MiB`, `GiB`); `B` alone is bytes. Written in fields named
/// `*_bytes`.
///
/// # Example
/// ```
/// use proxy_core::config::ByteSize;
/// let s: ByteSize = proxy_core::config::from_yaml("64KiB").unwrap();
/// assert_eq!(s.get(), 65_536);
/// assert_eq!(proxy_core::config::from_yaml::<ByteSize>("1MB").unwrap().get(), 1_000_000);
/// assert_eq!(proxy_core::config::from_yaml::<ByteSize>("512").unwrap().get(), 512);
/// assert!(proxy_core::config::from_yaml::<ByteSize>("12 parsecs").is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The size in bytes.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The size in bytes as `usize`, saturating.
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let bad = || format!("{s:?} is not a size (a number of bytes, or e.g. 64KiB, 1MB)");
        let n: u64 = num.parse().map_err(|_| bad())?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "kB" | "KB" | "k" | "K" => 1_000,
            "MB" | "M" => 1_000_000,
            "GB" | "G" => 1_000_000_000,
            "KiB" | "Ki" => 1 << 10,
            "MiB" | "Mi" => 1 << 20,
            "GiB" | "Gi" => 1 << 30,
            _ => return Err(bad()),
        };
        n.checked_mul(mult).map(Self).ok_or_else(bad)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of bytes, or a size such as 64KiB")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(Visit)
    }
}
