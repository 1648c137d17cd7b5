//! The cell holding a table (Maglev table, ring, round-robin cycle, cumulative
//! weights) built for one endpoint set, and the lookup shared by the hash balancers.

use std::{
    any::Any,
    fmt,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use arc_swap::ArcSwapOption;

use crate::{
    backend::{rendezvous, Backend},
    hash_balancer::HashTable,
    metrics::HashPick,
};

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
/// of a slice and keeps that; once published, a pick over a slice that is neither the
/// current nor the previous set gets no table and falls back rather than rebuilding
/// on the request path.
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
