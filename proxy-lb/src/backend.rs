//! What a balancer needs to know about one endpoint ([`Backend`]), and the picks
//! that need no table (uniform among the healthy, rendezvous hashing).

use std::{
    fmt::Write as _,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
};

use proxy_core::Endpoint;

/// One endpoint as the balancers see it. Implemented for [`proxy_core::Endpoint`] and
/// [`StaticBackend`]; the algorithms are generic over it so that they can be driven
/// without a running proxy (proptests, benches, a user's own services).
pub trait Backend {
    /// Relative weight; `0` means the backend never receives traffic from weighted
    /// policies.
    fn weight(&self) -> u32;
    /// Whether the backend may receive traffic.
    fn is_healthy(&self) -> bool;
    /// Requests in flight now (least request).
    fn active_requests(&self) -> u64;
    /// Appends the stable identity hashed by ring hash and Maglev (for an endpoint its
    /// address, `10.0.0.1:8080`). Keep it stable across releases: it decides which
    /// keys a backend owns.
    fn write_hash_id(&self, out: &mut String);
}

impl Backend for Endpoint {
    fn weight(&self) -> u32 {
        self.weight.get()
    }

    fn is_healthy(&self) -> bool {
        Endpoint::is_healthy(self)
    }

    fn active_requests(&self) -> u64 {
        Endpoint::active_requests(self)
    }

    /// The endpoint's `hash_key` metadata label when set (so an endpoint can move to
    /// a new address and keep its keys), else its address.
    fn write_hash_id(&self, out: &mut String) {
        match self.label("hash_key") {
            Some(key) => out.push_str(key),
            None => {
                let _ = write!(out, "{}", self.address);
            }
        }
    }
}

impl<B: Backend + ?Sized> Backend for &B {
    fn weight(&self) -> u32 {
        (**self).weight()
    }

    fn is_healthy(&self) -> bool {
        (**self).is_healthy()
    }

    fn active_requests(&self) -> u64 {
        (**self).active_requests()
    }

    fn write_hash_id(&self, out: &mut String) {
        (**self).write_hash_id(out)
    }
}

impl<B: Backend + ?Sized> Backend for Arc<B> {
    fn weight(&self) -> u32 {
        (**self).weight()
    }

    fn is_healthy(&self) -> bool {
        (**self).is_healthy()
    }

    fn active_requests(&self) -> u64 {
        (**self).active_requests()
    }

    fn write_hash_id(&self, out: &mut String) {
        (**self).write_hash_id(out)
    }
}

/// A backend described by plain values: an id, a weight, a health flag and an
/// in-flight counter, for driving the balancers outside a proxy.
///
/// # Example
/// ```
/// use proxy_lb::{Backend, StaticBackend};
///
/// let b = StaticBackend::new("10.0.0.1:80", 3);
/// assert!(b.is_healthy());
/// b.set_healthy(false);
/// assert!(!b.is_healthy());
/// ```
#[derive(Debug)]
pub struct StaticBackend {
    id: Box<str>,
    weight: u32,
    healthy: AtomicBool,
    active: AtomicU64,
}

impl StaticBackend {
    /// A healthy backend with no request in flight.
    pub fn new(id: impl Into<Box<str>>, weight: u32) -> Self {
        Self {
            id: id.into(),
            weight,
            healthy: AtomicBool::new(true),
            active: AtomicU64::new(0),
        }
    }

    /// The backend's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Marks the backend healthy or not.
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    /// Sets the number of requests in flight.
    pub fn set_active(&self, active: u64) {
        self.active.store(active, Ordering::Relaxed);
    }
}

impl Backend for StaticBackend {
    fn weight(&self) -> u32 {
        self.weight
    }

    fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    fn active_requests(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    fn write_hash_id(&self, out: &mut String) {
        out.push_str(&self.id);
    }
}

/// The hash ids of `backends`, in order.
pub(crate) fn hash_ids<B: Backend>(backends: &[B]) -> Vec<String> {
    backends
        .iter()
        .map(|b| {
            let mut s = String::new();
            b.write_hash_id(&mut s);
            s
        })
        .collect()
}

/// Draws a uniform index among the healthy backends with a few random probes, then an
/// exact pass; `None` when none is healthy.
pub(crate) fn random_healthy<B: Backend>(backends: &[B]) -> Option<usize> {
    random_healthy_except(backends, None)
}

/// [`random_healthy`] over the backends other than `except`.
pub(crate) fn random_healthy_except<B: Backend>(
    backends: &[B],
    except: Option<usize>,
) -> Option<usize> {
    let n = backends.len();
    let excluded = usize::from(except.is_some_and(|e| e < n));
    let candidates = n - excluded;
    if candidates == 0 {
        return None;
    }
    // The j-th candidate, skipping `except`.
    let nth = |j: usize| match except {
        Some(e) if j >= e => j + 1,
        _ => j,
    };
    for _ in 0..4 {
        let i = nth(fastrand::usize(..candidates));
        if backends[i].is_healthy() {
            return Some(i);
        }
    }
    let usable = |(i, b): &(usize, &B)| Some(*i) != except && b.is_healthy();
    let healthy = backends.iter().enumerate().filter(usable).count();
    if healthy == 0 {
        return None;
    }
    let k = fastrand::usize(..healthy);
    backends
        .iter()
        .enumerate()
        .filter(usable)
        .nth(k)
        .map(|(i, _)| i)
}

/// Weighted rendezvous hashing over the healthy backends: consistent for `key`
/// without a table, O(n). The fallback of the hash balancers when their table does
/// not fit the slice or a bounded walk found no healthy entry.
pub(crate) fn rendezvous<B: Backend>(backends: &[B], key: u64) -> Option<usize> {
    let mut id = String::new();
    let mut best: Option<(f64, usize)> = None;
    for (i, b) in backends.iter().enumerate() {
        let w = b.weight();
        if w == 0 || !b.is_healthy() {
            continue;
        }
        id.clear();
        b.write_hash_id(&mut id);
        let h = xxhash_rust::xxh64::xxh64(id.as_bytes(), key);
        // A uniform draw in (0, 1) from the hash; score = -w / ln(u), largest wins.
        let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let score = -f64::from(w) / u.ln();
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, i));
        }
    }
    best.map(|(_, i)| i)
}
