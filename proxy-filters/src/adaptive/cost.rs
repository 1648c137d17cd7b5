//! Per-interface cost, learned from a baseline, so that the most expensive interfaces
//! are shed first.
//!
//! An interface is an RPC `service/method` when a codec put one in the request, else the
//! first `path_segments` segments of the path. The request path finds its interface's
//! slot in a fixed-size open-addressing table (hash compare, no lock; a new interface
//! claims a free slot with one compare-and-swap) and adds its latency to two atomic
//! counters. The control loop drains the counters every interval and, only in healthy
//! intervals (no overload, nothing rejected), moves each interface's baseline latency
//! towards the interval's mean. An interface whose baseline is at least
//! `high_cost_factor` times the traffic-weighted mean baseline of all interfaces is
//! marked high-cost: the gate admits it only below a fraction of the limit.
//!
//! A slot without requests for `evict_after` intervals is freed, so interfaces that
//! stopped (or junk paths that filled the table) make room for new ones. A lookup
//! racing an eviction may count one request into the wrong slot, or claim a second
//! slot for an interface whose probe chain passed the freed one; the duplicate goes
//! idle and is freed in turn.

use std::sync::{
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed},
    Mutex, PoisonError,
};

/// How many slots are probed for an interface before it counts as "other".
const MAX_PROBES: usize = 8;
/// Weight of one interval's mean in an interface's baseline.
const BASELINE_ALPHA: f64 = 0.2;
/// Weight of one interval's count in an interface's request rate.
const RATE_ALPHA: f64 = 0.2;

/// One interface of a request, as borrowed from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InterfaceKey<'a> {
    /// An RPC service and method.
    Rpc {
        /// Service name.
        service: &'a str,
        /// Method name.
        method: &'a str,
    },
    /// A path prefix.
    Path(&'a str),
}

impl InterfaceKey<'_> {
    fn hash(&self) -> u64 {
        let mut h = Fnv::default();
        match self {
            Self::Rpc { service, method } => {
                h.write(b"rpc:");
                h.write(service.as_bytes());
                h.write(b"/");
                h.write(method.as_bytes());
            }
            Self::Path(p) => h.write(p.as_bytes()),
        }
        h.0.max(1) // 0 marks a free slot
    }

    fn label(&self) -> Box<str> {
        match self {
            Self::Rpc { service, method } => format!("{service}/{method}").into(),
            Self::Path(p) => (*p).into(),
        }
    }
}

/// The first `segments` segments of `path` (`0`: the whole path).
pub(crate) fn path_prefix(path: &str, segments: usize) -> &str {
    if segments == 0 {
        return path;
    }
    let mut seen = 0;
    for (i, b) in path.bytes().enumerate() {
        if b == b'/' && i > 0 {
            seen += 1;
            if seen == segments {
                return &path[..i];
            }
        }
    }
    path
}

/// 64-bit FNV-1a: short keys, no allocation, stable.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[derive(Debug, Default)]
struct Slot {
    hash: AtomicU64,
    /// The label, set when the slot is claimed (once per new interface) and read by
    /// the control loop.
    key: Mutex<Option<Box<str>>>,
    sum_micros: AtomicU64,
    count: AtomicU64,
    high_cost: AtomicBool,
}

/// The shared table of interfaces.
#[derive(Debug)]
pub(crate) struct CostTable {
    slots: Box<[Slot]>,
    used: AtomicUsize,
    max_interfaces: usize,
}

impl CostTable {
    /// A table for up to `max_interfaces` interfaces (at least 1).
    pub(crate) fn new(max_interfaces: usize) -> Self {
        let max_interfaces = max_interfaces.max(1);
        let n = (max_interfaces * 2).next_power_of_two();
        Self {
            slots: (0..n).map(|_| Slot::default()).collect(),
            used: AtomicUsize::new(0),
            max_interfaces,
        }
    }

    /// The slot of `key`, claiming a free one for a new interface; `None` when the
    /// table is full (the request is then never treated as high-cost).
    pub(crate) fn slot(&self, key: InterfaceKey<'_>) -> Option<usize> {
        let hash = key.hash();
        let mask = self.slots.len() - 1;
        #[allow(clippy::cast_possible_truncation)]
        let start = hash as usize & mask;
        for probe in 0..MAX_PROBES.min(self.slots.len()) {
            let i = (start + probe) & mask;
            let slot = &self.slots[i];
            let h = slot.hash.load(Relaxed);
            if h == hash {
                return Some(i);
            }
            if h != 0 {
                continue;
            }
            if self.used.load(Relaxed) >= self.max_interfaces {
                return None;
            }
            match slot.hash.compare_exchange(0, hash, Relaxed, Relaxed) {
                Ok(_) => {
                    self.used.fetch_add(1, Relaxed);
                    *slot.key.lock().unwrap_or_else(PoisonError::into_inner) = Some(key.label());
                    return Some(i);
                }
                Err(actual) if actual == hash => return Some(i),
                Err(_) => {}
            }
        }
        None
    }

    /// Whether the interface in `slot` is currently high-cost.
    pub(crate) fn is_high_cost(&self, slot: usize) -> bool {
        self.slots
            .get(slot)
            .is_some_and(|s| s.high_cost.load(Relaxed))
    }

    /// Adds one completed request of `micros` to `slot`.
    pub(crate) fn record(&self, slot: usize, micros: u64) {
        if let Some(s) = self.slots.get(slot) {
            s.sum_micros.fetch_add(micros, Relaxed);
            s.count.fetch_add(1, Relaxed);
        }
    }

    fn len(&self) -> usize {
        self.slots.len()
    }
}

/// The learned view of one interface (control loop side).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct InterfaceCost {
    /// The interface label (`service/method` or path prefix).
    pub(crate) key: Box<str>,
    /// Baseline latency, seconds.
    pub(crate) baseline: f64,
    /// Whether it is shed first.
    pub(crate) high_cost: bool,
}

#[derive(Clone, Debug, Default)]
struct Learned {
    baseline_micros: Option<f64>,
    rate: f64,
    samples: u64,
    idle: u32,
}

/// The control loop's learner over a [`CostTable`].
#[derive(Debug)]
pub(crate) struct CostLearner {
    learned: Vec<Learned>,
    high_cost_factor: f64,
    min_samples: u64,
    evict_after: u32,
}

impl CostLearner {
    /// A learner that frees slots idle for `evict_after` updates.
    pub(crate) fn new(
        table: &CostTable,
        high_cost_factor: f64,
        min_samples: u64,
        evict_after: u32,
    ) -> Self {
        Self {
            learned: vec![Learned::default(); table.len()],
            high_cost_factor,
            min_samples,
            evict_after: evict_after.max(1),
        }
    }

    /// Drains the interval's counters; learns baselines if `healthy`; reclassifies.
    pub(crate) fn update(&mut self, table: &CostTable, healthy: bool) {
        for (slot, l) in table.slots.iter().zip(self.learned.iter_mut()) {
            if slot.hash.load(Relaxed) == 0 {
                continue;
            }
            let n = slot.count.swap(0, Relaxed);
            let sum = slot.sum_micros.swap(0, Relaxed);
            l.idle = if n == 0 { l.idle.saturating_add(1) } else { 0 };
            if l.idle >= self.evict_after {
                *l = Learned::default();
                slot.high_cost.store(false, Relaxed);
                *slot.key.lock().unwrap_or_else(PoisonError::into_inner) = None;
                slot.hash.store(0, Relaxed);
                table.used.fetch_sub(1, Relaxed);
                continue;
            }
            #[allow(clippy::cast_precision_loss)]
            let nf = n as f64;
            l.rate += RATE_ALPHA * (nf - l.rate);
            if healthy && n > 0 {
                #[allow(clippy::cast_precision_loss)]
                let mean = sum as f64 / nf;
                l.baseline_micros = Some(match l.baseline_micros {
                    None => mean,
                    Some(b) => b + BASELINE_ALPHA * (mean - b),
                });
                l.samples = l.samples.saturating_add(n);
            }
        }
        let (mut weighted, mut weight) = (0.0, 0.0);
        for l in &self.learned {
            if let (Some(b), true) = (l.baseline_micros, l.samples >= self.min_samples) {
                weighted += b * l.rate;
                weight += l.rate;
            }
        }
        let reference = (weight > 0.0).then(|| weighted / weight);
        for (slot, l) in table.slots.iter().zip(&self.learned) {
            let high = match (reference, l.baseline_micros) {
                (Some(r), Some(b)) => {
                    l.samples >= self.min_samples && r > 0.0 && b >= self.high_cost_factor * r
                }
                _ => false,
            };
            if slot.high_cost.load(Relaxed) != high {
                slot.high_cost.store(high, Relaxed);
            }
        }
    }

    /// The interfaces with a baseline, for metrics.
    pub(crate) fn interfaces(&self, table: &CostTable) -> Vec<InterfaceCost> {
        table
            .slots
            .iter()
            .zip(&self.learned)
            .filter_map(|(slot, l)| {
                let key = slot
                    .key
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone()?;
                Some(InterfaceCost {
                    key,
                    baseline: l.baseline_micros? / 1e6,
                    high_cost: slot.high_cost.load(Relaxed),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_prefixes() {
        assert_eq!(path_prefix("/a/b/c", 2), "/a/b");
        assert_eq!(path_prefix("/a/b/c", 1), "/a");
        assert_eq!(path_prefix("/a", 2), "/a");
        assert_eq!(path_prefix("/a/b/c", 0), "/a/b/c");
        assert_eq!(path_prefix("/pkg.Svc/Method", 2), "/pkg.Svc/Method");
        assert_eq!(path_prefix("", 2), "");
        assert_eq!(path_prefix("//x", 1), "/");
    }

    #[test]
    fn table_is_bounded() {
        let t = CostTable::new(3);
        let a = t.slot(InterfaceKey::Path("/a")).unwrap();
        assert_eq!(t.slot(InterfaceKey::Path("/a")), Some(a));
        let rpc = InterfaceKey::Rpc {
            service: "S",
            method: "M",
        };
        assert!(t.slot(rpc).is_some());
        assert!(t.slot(InterfaceKey::Path("/c")).is_some());
        assert_eq!(t.slot(InterfaceKey::Path("/d")), None);
        assert_eq!(t.slot(InterfaceKey::Path("/a")), Some(a));
    }

    #[test]
    fn slow_interface_becomes_high_cost_only_when_healthy() {
        let t = CostTable::new(8);
        let fast = t.slot(InterfaceKey::Path("/fast")).unwrap();
        let slow = t.slot(InterfaceKey::Path("/slow")).unwrap();
        let mut learner = CostLearner::new(&t, 2.0, 10, 1000);
        // Overloaded intervals teach nothing.
        for _ in 0..5 {
            for _ in 0..20 {
                t.record(fast, 1_000);
                t.record(slow, 50_000);
            }
            learner.update(&t, false);
        }
        assert!(!t.is_high_cost(slow));
        for _ in 0..5 {
            for _ in 0..90 {
                t.record(fast, 1_000);
            }
            for _ in 0..10 {
                t.record(slow, 50_000);
            }
            learner.update(&t, true);
        }
        assert!(t.is_high_cost(slow));
        assert!(!t.is_high_cost(fast));
        let ifaces = learner.interfaces(&t);
        assert_eq!(ifaces.len(), 2);
        assert!(ifaces.iter().any(|i| &*i.key == "/slow" && i.high_cost));
    }

    #[test]
    fn equal_interfaces_are_not_high_cost() {
        let t = CostTable::new(8);
        let slots: Vec<_> = ["/a", "/b", "/c"]
            .iter()
            .map(|p| t.slot(InterfaceKey::Path(p)).unwrap())
            .collect();
        let mut learner = CostLearner::new(&t, 1.5, 10, 1000);
        for round in 0..10u64 {
            for (k, &s) in slots.iter().enumerate() {
                for j in 0..20u64 {
                    t.record(s, 10_000 + (round * 7 + j * 13 + k as u64 * 17) % 3_000);
                }
            }
            learner.update(&t, true);
        }
        assert!(slots.iter().all(|&s| !t.is_high_cost(s)));
    }

    #[test]
    fn idle_interfaces_are_evicted() {
        let t = CostTable::new(2);
        let a = t.slot(InterfaceKey::Path("/a")).unwrap();
        let b = t.slot(InterfaceKey::Path("/b")).unwrap();
        assert_eq!(t.slot(InterfaceKey::Path("/c")), None, "full");
        let mut learner = CostLearner::new(&t, 2.0, 1, 3);
        for _ in 0..3 {
            t.record(a, 1_000);
            learner.update(&t, true);
        }
        // /b saw nothing for 3 updates: freed; /a stays.
        assert_eq!(t.slot(InterfaceKey::Path("/a")), Some(a));
        let c = t.slot(InterfaceKey::Path("/c")).unwrap();
        assert_ne!(c, a);
        assert_eq!(t.used.load(Relaxed), 2);
        let keys: Vec<_> = learner.interfaces(&t).into_iter().map(|i| i.key).collect();
        assert_eq!(keys, vec![Box::from("/a")]);
        let _ = b;
    }
}
