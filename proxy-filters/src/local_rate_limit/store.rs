//! The keyed buckets' state: a governor state store bounded by `max_keys`.

use std::{
    collections::HashMap,
    num::NonZeroU64,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock,
    },
    time::{Duration, Instant},
};

use governor::{nanos::Nanos, state::StateStore};

use crate::metrics::LocalRateLimitCounters;

const SHARDS: usize = 16;

/// A governor state store with at most `max_keys` keys (plus one overflow bucket),
/// sharded so that lookups of known keys take a shard read lock only.
#[derive(Debug)]
pub(crate) struct BoundedStore {
    shards: Box<[RwLock<Shard>]>,
    per_shard: usize,
    overflow: AtomicU64,
    start: Instant,
    counters: Arc<LocalRateLimitCounters>,
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<u64, AtomicU64>,
    last_sweep: Option<Instant>,
}

impl BoundedStore {
    pub(crate) fn new(max_keys: usize, counters: Arc<LocalRateLimitCounters>) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            per_shard: max_keys.div_ceil(SHARDS).max(1),
            overflow: AtomicU64::new(0),
            // Taken before the limiter's own start: a bucket's time here is never
            // earlier than the limiter's, so "idle" below is conservative.
            start: Instant::now(),
            counters,
        }
    }
}

/// The GCRA update on one cell, as governor's own in-memory state does it: a CAS
/// loop over the theoretical arrival time (0 = never used).
fn measure<T, F, E>(cell: &AtomicU64, f: &F) -> Result<T, E>
where
    F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
{
    let mut prev = cell.load(Ordering::Acquire);
    loop {
        let (t, next) = f(NonZeroU64::new(prev).map(|n| Nanos::new(n.get())))?;
        match cell.compare_exchange_weak(prev, next.as_u64(), Ordering::Release, Ordering::Relaxed)
        {
            Ok(_) => return Ok(t),
            Err(p) => prev = p,
        }
    }
}

impl StateStore for BoundedStore {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let shard = &self.shards[(*key as usize) % SHARDS];
        {
            let read = shard.read().unwrap_or_else(|e| e.into_inner());
            if let Some(cell) = read.map.get(key) {
                return measure(cell, &f);
            }
        }
        let mut write = shard.write().unwrap_or_else(|e| e.into_inner());
        if !write.map.contains_key(key) && write.map.len() >= self.per_shard {
            let now = Instant::now();
            // Sweep idle keys at most once a second per shard: a bucket whose
            // theoretical arrival time has passed is full again, like a new one.
            if write
                .last_sweep
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
            {
                write.last_sweep = Some(now);
                let elapsed = now.duration_since(self.start).as_nanos() as u64;
                let before = write.map.len();
                write
                    .map
                    .retain(|_, tat| tat.load(Ordering::Relaxed) > elapsed);
                let removed = before - write.map.len();
                for _ in 0..removed {
                    self.counters.keys.dec();
                }
            }
            if write.map.len() >= self.per_shard {
                drop(write);
                self.counters.overflow.inc();
                return measure(&self.overflow, &f);
            }
        }
        let cell = write.map.entry(*key).or_insert_with(|| {
            self.counters.keys.inc();
            AtomicU64::new(0)
        });
        measure(cell, &f)
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use governor::{clock::MonotonicClock, Quota, RateLimiter};

    use super::*;
    use crate::local_rate_limit::Keyed;

    #[test]
    fn store_is_bounded_and_overflows() {
        let counters = Arc::new(LocalRateLimitCounters::default());
        let quota = Quota::per_second(NonZeroU32::new(1).unwrap());
        let limiter: Keyed = RateLimiter::new(
            quota,
            BoundedStore::new(32, counters.clone()),
            MonotonicClock,
        );
        for k in 0..10_000u64 {
            let _ = limiter.check_key(&k);
        }
        assert!(counters.keys.get() <= 32, "{}", counters.keys.get());
        assert!(counters.overflow.get() > 0);
        // Key 0 was tracked first and is limited on its own bucket.
        assert!(limiter.check_key(&0).is_err());
    }
}
