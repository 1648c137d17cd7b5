//! The keyed buckets: one GCRA cell per key in a sharded table of at most `max_keys`
//! keys, and what happens to a new key when its shard is full ([`Overflow`]).

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, RwLock, Weak,
    },
    time::{Duration, Instant},
};

use governor::Quota;

use super::Overflow;
use crate::metrics::LocalRateLimitCounters;

const SHARDS: usize = 16;

/// Why a keyed check refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The key's bucket (or the shared overflow bucket) is empty for this long.
    Wait(Duration),
    /// The key table is full and the policy is [`Overflow::Reject`].
    Full,
}

/// The buckets of one descriptor.
#[derive(Debug)]
pub(crate) struct KeyedBuckets {
    table: Arc<Table>,
    policy: Overflow,
    /// Emission interval and burst tolerance, in nanoseconds (as governor's GCRA).
    t: u64,
    tau: u64,
    /// The one bucket of [`Overflow::SharedBucket`].
    overflow: AtomicU64,
    start: Instant,
    counters: Arc<LocalRateLimitCounters>,
}

/// The key table, shared with the keys gauge (which holds it weakly).
#[derive(Debug)]
pub(crate) struct Table {
    shards: Box<[RwLock<Shard>]>,
    /// The config build this table belongs to (see [`KeyTables`]).
    generation: AtomicU64,
}

#[derive(Debug)]
struct Shard {
    index: HashMap<u64, usize>,
    slots: Vec<Slot>,
    capacity: usize,
    /// The CLOCK hand of [`Overflow::EvictLru`]: the next slot to consider.
    hand: usize,
    last_sweep: Option<Instant>,
}

#[derive(Debug)]
struct Slot {
    key: u64,
    /// Theoretical arrival time in nanoseconds since `start`; 0 = never used.
    tat: AtomicU64,
    /// Used since the CLOCK hand last passed (evict_lru only).
    used: AtomicBool,
}

impl Slot {
    fn new(key: u64) -> Self {
        Self {
            key,
            tat: AtomicU64::new(0),
            used: AtomicBool::new(false),
        }
    }
}

impl Table {
    fn new(max_keys: usize) -> Self {
        // Capacities sum to `max_keys` exactly, so the table never holds more.
        let n = max_keys.clamp(1, SHARDS);
        let shards = (0..n)
            .map(|i| {
                RwLock::new(Shard {
                    index: HashMap::new(),
                    slots: Vec::new(),
                    capacity: max_keys / n + usize::from(i < max_keys % n),
                    hand: 0,
                    last_sweep: None,
                })
            })
            .collect();
        Self {
            shards,
            generation: AtomicU64::new(0),
        }
    }

    /// Keys held now.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).slots.len())
            .sum()
    }
}

impl KeyedBuckets {
    pub(crate) fn new(
        quota: Quota,
        max_keys: usize,
        policy: Overflow,
        counters: Arc<LocalRateLimitCounters>,
        build: usize,
    ) -> Self {
        let t = quota
            .replenish_interval()
            .as_nanos()
            .clamp(1, u128::from(u64::MAX)) as u64;
        let tau = t.saturating_mul(u64::from(quota.burst_size().get() - 1));
        let table = Arc::new(Table::new(max_keys));
        counters.tables.register(&table, build);
        Self {
            table,
            policy,
            t,
            tau,
            overflow: AtomicU64::new(0),
            start: Instant::now(),
            counters,
        }
    }

    /// Marks the table as part of the config build `build` (a limiter kept by a reload).
    pub(crate) fn adopt(&self, build: usize) {
        self.counters.tables.register(&self.table, build);
    }

    /// Takes one request from `key`'s bucket.
    pub(crate) fn check(&self, key: u64) -> Result<(), Refused> {
        let now = self.now();
        let shard = &self.table.shards[(key % self.table.shards.len() as u64) as usize];
        {
            let read = shard.read().unwrap_or_else(|e| e.into_inner());
            if let Some(&i) = read.index.get(&key) {
                return self.take(&read.slots[i], now);
            }
        }
        let mut write = shard.write().unwrap_or_else(|e| e.into_inner());
        let w = &mut *write;
        if let Some(&i) = w.index.get(&key) {
            return self.take(&w.slots[i], now);
        }
        if w.slots.len() >= w.capacity {
            match self.policy {
                Overflow::EvictLru => {
                    let i = w.victim();
                    w.index.remove(&w.slots[i].key);
                    w.slots[i] = Slot::new(key);
                    w.index.insert(key, i);
                    self.counters.evicted.inc();
                    // Not marked used: a new key is the next to go unless used again.
                    return self.gcra(&w.slots[i].tat, now);
                }
                Overflow::SharedBucket | Overflow::Reject => {
                    w.sweep_idle(now);
                    if w.slots.len() >= w.capacity {
                        drop(write);
                        self.counters.overflow.inc();
                        return match self.policy {
                            Overflow::Reject => Err(Refused::Full),
                            _ => self.gcra(&self.overflow, now),
                        };
                    }
                }
            }
        }
        w.slots.push(Slot::new(key));
        w.index.insert(key, w.slots.len() - 1);
        self.gcra(&w.slots[w.slots.len() - 1].tat, now)
    }

    fn take(&self, slot: &Slot, now: u64) -> Result<(), Refused> {
        // A relaxed load first: a busy key does not write the flag's cache line.
        if self.policy == Overflow::EvictLru && !slot.used.load(Ordering::Relaxed) {
            slot.used.store(true, Ordering::Relaxed);
        }
        self.gcra(&slot.tat, now)
    }

    fn now(&self) -> u64 {
        // Never 0: 0 marks a cell never used.
        (self.start.elapsed().as_nanos() as u64).max(1)
    }

    /// The GCRA update on one cell, as governor's own state does it: a CAS loop over
    /// the theoretical arrival time.
    fn gcra(&self, cell: &AtomicU64, now: u64) -> Result<(), Refused> {
        let mut prev = cell.load(Ordering::Acquire);
        loop {
            let tat = if prev == 0 { now } else { prev };
            let earliest = tat.saturating_sub(self.tau);
            if now < earliest {
                return Err(Refused::Wait(Duration::from_nanos(earliest - now)));
            }
            let next = tat.max(now) + self.t;
            match cell.compare_exchange_weak(prev, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(p) => prev = p,
            }
        }
    }
}

impl Shard {
    /// The slot to reuse (CLOCK): the first from the hand not used since the hand last
    /// passed, clearing the flags it passes. Each flag cleared was paid for by a
    /// request, so this is O(1) amortised; a key used only once goes in FIFO order.
    fn victim(&mut self) -> usize {
        loop {
            let i = self.hand;
            self.hand = (self.hand + 1) % self.slots.len();
            if !self.slots[i].used.swap(false, Ordering::Relaxed) {
                return i;
            }
        }
    }

    /// Drops idle keys, at most once a second: a bucket whose theoretical arrival time
    /// has passed is full again, like a new one, so nothing is lost.
    fn sweep_idle(&mut self, now_nanos: u64) {
        let now = Instant::now();
        if self
            .last_sweep
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.last_sweep = Some(now);
        let mut i = 0;
        while i < self.slots.len() {
            if self.slots[i].tat.load(Ordering::Relaxed) <= now_nanos {
                self.index.remove(&self.slots[i].key);
                self.slots.swap_remove(i);
                if let Some(moved) = self.slots.get(i) {
                    self.index.insert(moved.key, i);
                }
            } else {
                i += 1;
            }
        }
        self.hand = 0;
    }
}

/// The key tables behind one `proxy_filters_local_rate_limit_keys` gauge: the gauge
/// reads the keys of the tables of the newest config build still alive, so a limiter
/// replaced by a reload stops counting at once (even while an idle connection still
/// holds the old stack), and a rejected reload (whose tables die with it) changes
/// nothing. Tables built from code outside a config build share build 0.
#[derive(Debug, Default)]
pub(crate) struct KeyTables {
    inner: Mutex<TablesInner>,
}

#[derive(Debug, Default)]
struct TablesInner {
    tables: Vec<Weak<Table>>,
    /// The last build seen and its generation.
    build: usize,
    generation: u64,
}

impl KeyTables {
    fn register(&self, table: &Arc<Table>, build: usize) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.build != build {
            inner.build = build;
            inner.generation += 1;
        }
        table.generation.store(inner.generation, Ordering::Relaxed);
        inner.tables.retain(|t| t.strong_count() > 0);
        if !inner
            .tables
            .iter()
            .any(|t| std::ptr::eq(t.as_ptr(), Arc::as_ptr(table)))
        {
            inner.tables.push(Arc::downgrade(table));
        }
    }

    /// Keys held by the live tables of the newest live build.
    pub(crate) fn keys(&self) -> usize {
        let live: Vec<Arc<Table>> = {
            let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            inner.tables.iter().filter_map(Weak::upgrade).collect()
        };
        let newest = live
            .iter()
            .map(|t| t.generation.load(Ordering::Relaxed))
            .max();
        live.iter()
            .filter(|t| Some(t.generation.load(Ordering::Relaxed)) == newest)
            .map(|t| t.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn buckets(max_keys: usize, policy: Overflow, c: &Arc<LocalRateLimitCounters>) -> KeyedBuckets {
        let quota = Quota::per_hour(NonZeroU32::new(1).unwrap());
        KeyedBuckets::new(quota, max_keys, policy, c.clone(), 0)
    }

    #[test]
    fn capacity_is_max_keys_exactly() {
        for max in [1, 5, 16, 17, 100, 1000] {
            let t = Table::new(max);
            let cap: usize = t.shards.iter().map(|s| s.read().unwrap().capacity).sum();
            assert_eq!(cap, max);
        }
    }

    #[test]
    fn shared_bucket_overflows() {
        let c = Arc::new(LocalRateLimitCounters::default());
        let b = buckets(32, Overflow::SharedBucket, &c);
        let admitted = (0..10_000u64).filter(|k| b.check(*k).is_ok()).count();
        assert_eq!(c.keys(), 32);
        assert_eq!(admitted, 33, "32 keys and the shared bucket's one");
        assert_eq!(c.overflow.get(), 10_000 - 32);
        assert!(
            matches!(b.check(0), Err(Refused::Wait(_))),
            "key 0 has its own bucket"
        );
    }

    #[test]
    fn reject_refuses_new_keys_when_full() {
        let c = Arc::new(LocalRateLimitCounters::default());
        let b = buckets(8, Overflow::Reject, &c);
        let full = (0..1000u64)
            .filter(|k| b.check(*k) == Err(Refused::Full))
            .count();
        assert_eq!(full, 1000 - 8);
        assert_eq!(c.keys(), 8);
    }

    #[test]
    fn evict_lru_keeps_used_keys_and_evicts_the_least_recently_used() {
        let c = Arc::new(LocalRateLimitCounters::default());
        // 16 shards of 2 keys: key k lives in shard k % 16.
        let b = buckets(32, Overflow::EvictLru, &c);
        let hot = 1u64;
        assert!(b.check(hot).is_ok());
        for k in 1..200u64 {
            assert!(b.check(k * 16 + 1).is_ok(), "a new key has its own bucket");
            assert!(b.check(hot).is_err(), "the key used since is kept");
        }
        assert!(b.check(16 + 1).is_ok(), "evicted long ago: starts afresh");
        assert_eq!(c.keys(), 2);
        assert_eq!(c.evicted.get(), 199);
    }

    #[test]
    fn gauge_counts_the_newest_build_only() {
        let c = Arc::new(LocalRateLimitCounters::default());
        let quota = Quota::per_hour(NonZeroU32::new(1).unwrap());
        let a = KeyedBuckets::new(quota, 100, Overflow::EvictLru, c.clone(), 1);
        let a2 = KeyedBuckets::new(quota, 100, Overflow::EvictLru, c.clone(), 1);
        (0..10u64).for_each(|k| assert!(a.check(k).is_ok()));
        (0..5u64).for_each(|k| assert!(a2.check(k).is_ok()));
        assert_eq!(c.keys(), 15, "two limiters of one build share the gauge");
        let b = KeyedBuckets::new(quota, 100, Overflow::EvictLru, c.clone(), 2);
        assert_eq!(c.keys(), 0, "replaced by build 2");
        a2.adopt(2);
        assert_eq!(c.keys(), 5, "kept by build 2");
        drop(b);
        drop(a2);
        assert_eq!(c.keys(), 10, "build 2 gone (rejected): build 1 counts");
    }
}
