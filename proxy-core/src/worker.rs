//! Which worker the calling thread is: the index that per-worker state (upstream
//! pools, statistics) is chosen by, so a request, its downstream connection and its
//! upstream connection stay on one core.
//!
//! The server numbers its worker threads from 0 when it starts them. Any other thread
//! (a test's runtime, an embedding application's own threads, the admin task) is
//! worker 0, which is always valid: per-worker state is an optimisation of locality,
//! never a correctness boundary, so any thread may use any worker's share.

use std::cell::Cell;

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The calling thread's worker index (0 on threads the server did not start).
///
/// # Example
///
/// ```
/// assert_eq!(proxy_core::worker::index(), 0);
/// ```
#[inline]
pub fn index() -> usize {
    INDEX.with(Cell::get)
}

/// The share of `n` per-worker slots the calling thread uses: its index modulo `n`
/// (`n` of 0 is taken as 1).
///
/// # Example
///
/// ```
/// assert_eq!(proxy_core::worker::slot(4), 0);
/// ```
#[inline]
pub fn slot(n: usize) -> usize {
    index() % n.max(1)
}

/// Marks the calling thread as worker `index`; called by the server on each worker
/// thread before it runs anything there.
pub(crate) fn set_index(index: usize) {
    INDEX.with(|c| c.set(index));
}
