//! Keys known over quota, remembered until their window ends, so that a client
//! past its quota costs no Redis round trip for the rest of the window.

use std::{collections::HashMap, hash::BuildHasher, sync::RwLock};

const SHARDS: usize = 16;

/// Over-quota verdicts by key hash: at most `max` keys, in 16 shards. A lookup takes
/// one shard's read lock; only a new verdict takes a write lock.
#[derive(Debug)]
pub(crate) struct OverQuota {
    shards: [RwLock<HashMap<u64, u64>>; SHARDS],
    per_shard: usize,
    hasher: std::hash::RandomState,
}

impl OverQuota {
    /// Room for about `max` keys.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            shards: std::array::from_fn(|_| RwLock::new(HashMap::new())),
            per_shard: max.div_ceil(SHARDS).max(1),
            hasher: std::hash::RandomState::new(),
        }
    }

    /// The hash `key` is remembered under.
    pub(crate) fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn shard(&self, hash: u64) -> &RwLock<HashMap<u64, u64>> {
        &self.shards[(hash >> 60) as usize % SHARDS]
    }

    /// Whether the key of `hash` is known over quota at `now_ms`.
    pub(crate) fn contains(&self, hash: u64, now_ms: u64) -> bool {
        let shard = self.shard(hash).read().unwrap_or_else(|e| e.into_inner());
        shard.get(&hash).is_some_and(|&end| end > now_ms)
    }

    /// Remembers the key of `hash` over quota until `end_ms`. A full shard first drops
    /// its ended verdicts; if it is still full, the verdict is not kept (the key's
    /// next requests ask Redis, which still refuses them).
    pub(crate) fn insert(&self, hash: u64, end_ms: u64, now_ms: u64) {
        let mut shard = self.shard(hash).write().unwrap_or_else(|e| e.into_inner());
        if shard.len() >= self.per_shard && !shard.contains_key(&hash) {
            shard.retain(|_, end| *end > now_ms);
            if shard.len() >= self.per_shard {
                return;
            }
        }
        shard.insert(hash, end_ms);
    }

    /// Verdicts held (ended ones included until a full shard drops them).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_end_with_their_window_and_stay_bounded() {
        let v = OverQuota::new(16);
        let a = v.hash(b"a");
        v.insert(a, 2_000, 1_000);
        assert!(v.contains(a, 1_999));
        assert!(!v.contains(a, 2_000), "the window ended");
        for i in 0..10_000u32 {
            v.insert(v.hash(&i.to_be_bytes()), 2_000, 1_000);
        }
        assert!(v.len() <= 16, "{} verdicts", v.len());
        // Once their window ended, a full shard makes room for new ones.
        let b = v.hash(b"b");
        for i in 0..10_000u32 {
            v.insert(v.hash(&i.to_be_bytes()), 5_000, 3_000);
        }
        v.insert(b, 5_000, 3_000);
        assert!(v.len() <= 16);
    }
}
