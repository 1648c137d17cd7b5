//! What a balancer needs to know about one endpoint ([`Backend`]), and the cell that
//! holds a table built for one endpoint set ([`TableCell`]).

use std::{
    any::Any,
    fmt::{self, Write as _},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
};

use arc_swap::ArcSwapOption;
use proxy_core::Endpoint;

use crate::metrics::HashPick;

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

/// Identifies an endpoint slice by address and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SliceId {
    ptr: usize,
    len: usize,
}

impl SliceId {
    fn of<B>(backends: &[B]) -> Self {
        Self {
            ptr: backends.as_ptr() as usize,
            len: backends.len(),
        }
    }
}

/// A table built for one endpoint slice.
pub(crate) struct Built<T> {
    id: SliceId,
    /// A `Weak` to the slice given to [`TableCell::publish`]: keeps its allocation
    /// (not the endpoints in it), so that its address cannot be reused by another
    /// slice while this table claims it.
    keep: Option<Box<dyn Any + Send + Sync>>,
    pub(crate) table: T,
}

impl<T: fmt::Debug> fmt::Debug for Built<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Built")
            .field("len", &self.id.len)
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

/// Holds the table (Maglev table, hash ring, round-robin schedule) of the current
/// endpoint set, swapped whole with `arc-swap`: readers never lock.
///
/// Tables are built off the request path by [`TableCell::publish`] (called when the
/// endpoint set changes). A cell nobody published to builds lazily on the first pick
/// of a slice and publishes that; once published, a pick over another slice (an
/// in-flight request of an older snapshot) gets [`Lookup::Mismatch`] and falls back
/// rather than rebuilding on the request path.
pub(crate) struct TableCell<T> {
    current: ArcSwapOption<Built<T>>,
    /// The published table before `current`: requests still running on the older
    /// endpoint set (or on the running one, when the snapshot that published
    /// `current` was then rejected) keep their mapping.
    previous: ArcSwapOption<Built<T>>,
    published: AtomicBool,
}

impl<T> Default for TableCell<T> {
    fn default() -> Self {
        Self {
            current: ArcSwapOption::empty(),
            previous: ArcSwapOption::empty(),
            published: AtomicBool::new(false),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for TableCell<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableCell")
            .field("current", &self.current.load())
            .field("published", &self.published.load(Ordering::Relaxed))
            .finish()
    }
}

impl<T> TableCell<T> {
    /// Builds the table for `backends` and makes it current. `build` sees the
    /// previous table (to carry state over, e.g. the ring's scale).
    pub(crate) fn publish<B>(&self, backends: &Arc<[B]>, build: impl FnOnce(&[B], Option<&T>) -> T)
    where
        B: Send + Sync + 'static,
    {
        let prev = self.current.load_full();
        let table = build(backends, prev.as_deref().map(|b| &b.table));
        let keep: Box<dyn Any + Send + Sync> = Box::new(Arc::downgrade(backends));
        let built = Arc::new(Built {
            id: SliceId::of(backends),
            keep: Some(keep),
            table,
        });
        // A lazily built table holds no `Weak`: its slice's address may be reused.
        self.previous
            .store(prev.filter(|p| p.keep.is_some() && p.id != built.id));
        self.current.store(Some(built));
        self.published.store(true, Ordering::Release);
    }

    /// Runs `f` with the table for `backends`: the current or previous one when it
    /// was built for this slice, else (only while nothing was published) one built
    /// now and made current. `f` gets `None` when no table is for this slice and
    /// building one on the request path is not allowed: the caller falls back.
    ///
    /// The table is borrowed through an `arc-swap` guard: no reference count is
    /// touched on the hot path.
    pub(crate) fn with<B, R>(
        &self,
        backends: &[B],
        build: impl FnOnce(&[B], Option<&T>) -> T,
        f: impl FnOnce(Option<&T>) -> R,
    ) -> R {
        let id = SliceId::of(backends);
        let guard = self.current.load();
        if let Some(built) = guard.as_ref() {
            if built.id == id {
                return f(Some(&built.table));
            }
        }
        if self.published.load(Ordering::Acquire) {
            let previous = self.previous.load();
            return match previous.as_ref() {
                Some(built) if built.id == id => f(Some(&built.table)),
                _ => f(None),
            };
        }
        let table = build(backends, guard.as_deref().map(|b| &b.table));
        drop(guard);
        let built = Arc::new(Built {
            id,
            keep: None,
            table,
        });
        self.current.store(Some(built.clone()));
        f(Some(&built.table))
    }

    /// The current table, whatever slice it was built for.
    pub(crate) fn current(&self) -> Option<Arc<Built<T>>> {
        self.current.load_full()
    }
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

/// A hash lookup structure (Maglev table, ring) over backend indices.
pub(crate) trait HashTable {
    /// The backend owning `hash`, healthy or not.
    fn owner(&self, hash: u64) -> Option<usize>;
    /// The owner if `usable`, else a bounded walk to a neighbour that is.
    fn owner_usable(&self, hash: u64, usable: &dyn Fn(usize) -> bool) -> Option<usize>;
}

/// The healthy backend for `hash` through `table` (`None`: no table fits the slice),
/// and how it was found.
pub(crate) fn locate<T: HashTable, B: Backend>(
    table: Option<&T>,
    backends: &[B],
    hash: u64,
) -> (Option<usize>, HashPick) {
    let usable = |i: usize| backends.get(i).is_some_and(|b| b.is_healthy());
    if let Some(t) = table {
        match t.owner(hash) {
            Some(i) if usable(i) => return (Some(i), HashPick::Owner),
            Some(_) => {
                if let Some(i) = t.owner_usable(hash, &usable) {
                    return (Some(i), HashPick::Rehashed);
                }
            }
            None => {}
        }
    }
    match rendezvous(backends, hash) {
        Some(i) => (Some(i), HashPick::Fallback),
        None => (None, HashPick::None),
    }
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
