//! [`PerWorker`]: one cache-line-padded shard per worker, so that workers counting at
//! once never write to the same cache line; and the process-wide shard count.

use std::{
    ops::Deref,
    sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
};

use crate::worker;

/// Most shards a [`PerWorker`] gets when the shard count is not set.
const DEFAULT_MAX_SHARDS: usize = 16;
/// Most shards a [`PerWorker`] gets at all.
const MAX_SHARDS: usize = 64;

/// Shards of the [`PerWorker`]s created from now on; 0 until the server sets it.
static SHARDS: AtomicUsize = AtomicUsize::new(0);

/// Sets how many shards the [`PerWorker`]s created from now on get: `workers`, capped
/// at 64. The server calls it with its worker count before it builds its config, so
/// that every worker has its own shard. Stats created before keep their shard count:
/// workers past it share shards, which stays correct.
pub(crate) fn set_shard_count(workers: usize) {
    SHARDS.store(workers.clamp(1, MAX_SHARDS), Relaxed);
}

/// Shards of a [`PerWorker`] created now: the count the server set, else the number
/// of CPUs, capped at 16.
fn shard_count() -> usize {
    match SHARDS.load(Relaxed) {
        0 => std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(DEFAULT_MAX_SHARDS),
        n => n,
    }
}

/// A value aligned to its own cache line (two lines where the CPU prefetches lines in
/// pairs, as x86-64 and Apple's aarch64 cores do), so that writes to it never slow
/// down readers and writers of its neighbours.
#[cfg_attr(any(target_arch = "x86_64", target_arch = "aarch64"), repr(align(128)))]
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    repr(align(64))
)]
#[derive(Debug, Default)]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// One `T` per worker, each on its own cache line: a worker writes to its own shard
/// ([`PerWorker::local`], chosen by [`crate::worker::index`]) and a reader sums over
/// all of them ([`PerWorker::iter`]). Counting costs what one unshared atomic add
/// costs, however many workers count at once; reading costs one load per shard, so
/// keep values that the request path reads (a gauge a balancer compares) out of it.
///
/// The number of shards is fixed at creation: the server's worker count (see
/// [`crate::metrics`]), else the number of CPUs capped at 16. With more workers than
/// shards, worker `i` uses shard `i % shards`: workers then share a shard, which
/// stays correct (the shards hold atomics) and only costs some contention.
///
/// # Example
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
/// use proxy_core::metrics::PerWorker;
///
/// let hits: PerWorker<AtomicU64> = PerWorker::default();
/// hits.local().fetch_add(1, Relaxed);
/// assert_eq!(hits.iter().map(|s| s.load(Relaxed)).sum::<u64>(), 1);
/// ```
#[derive(Debug)]
pub struct PerWorker<T> {
    shards: Box<[Padded<T>]>,
}

impl<T: Default> Default for PerWorker<T> {
    fn default() -> Self {
        Self::with_shards(shard_count())
    }
}

impl<T: Default> PerWorker<T> {
    /// `shards` shards (at least one), whatever the process-wide shard count.
    pub fn with_shards(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1)).map(|_| Padded::default()).collect(),
        }
    }
}

impl<T> PerWorker<T> {
    /// The calling worker's shard.
    #[inline]
    pub fn local(&self) -> &T {
        let i = worker::index();
        // A worker index below the shard count (always, unless there are more workers
        // than shards) is used as is: no division on the hot path.
        match self.shards.get(i) {
            Some(shard) => shard,
            None => &self.shards[worker::slot(self.shards.len())],
        }
    }

    /// Every shard, to sum over.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.shards.iter().map(|s| &s.0)
    }

    /// The number of shards.
    pub fn len(&self) -> usize {
        self.shards.len()
    }

    /// Always false: there is at least one shard.
    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }
}

/// A monotonic counter sharded per worker: [`Counter::add`] writes the calling
/// worker's shard, [`Counter::get`] sums them.
///
/// # Example
/// ```
/// use proxy_core::metrics::Counter;
///
/// let c = Counter::default();
/// c.add(2);
/// assert_eq!(c.get(), 2);
/// ```
#[derive(Debug, Default)]
pub struct Counter(PerWorker<AtomicU64>);

impl Counter {
    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.local().fetch_add(n, Relaxed);
    }

    /// The sum over all workers.
    pub fn get(&self) -> u64 {
        sum(self.0.iter())
    }
}

/// The sum of `counters` (wrapping, as the atomics do).
pub(crate) fn sum<'a>(counters: impl IntoIterator<Item = &'a AtomicU64>) -> u64 {
    counters
        .into_iter()
        .fold(0, |acc, c| acc.wrapping_add(c.load(Relaxed)))
}
