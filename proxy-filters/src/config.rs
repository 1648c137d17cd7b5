//! Shared pieces of the filters' config sections: the share type ([`Percent`], core's,
//! re-exported) and the lock-free [`Sampler`] that turns a share into decisions.
//!
//! Sections are parsed with core's one helper ([`proxy_core::config::Section::parse`],
//! [`proxy_core::config::from_yaml`]), so their errors name the field path the same
//! way as every other section:
//!
//! ```
//! use proxy_filters::fault::FaultConfig;
//! let cfg: FaultConfig =
//!     proxy_core::config::from_yaml("abort: {status: 503, abort_percent: 5}").unwrap();
//! assert_eq!(cfg.abort.unwrap().abort_percent.value(), 5.0);
//! let err = proxy_core::config::from_yaml::<FaultConfig>("abort: {status: 503, abort_percent: 150}")
//!     .unwrap_err();
//! assert_eq!(err.path, "abort.abort_percent");
//! ```

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

pub use proxy_core::config::Percent;

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
}
