//! The cluster-wide cap on open upstream connections (`circuit_breakers.max_connections`)
//! and the requests waiting under it (`circuit_breakers.max_pending_requests`).
//!
//! Opening a connection takes a slot of a semaphore shared by every endpoint and worker
//! of the cluster, and the connection gives it back when it closes: both are rare
//! events, so the shared atomic of the semaphore costs nothing on the path of a request
//! that finds an idle pooled connection. A request that needs a new connection while
//! the cap is reached waits, counted against `max_pending_requests`, for an idle
//! connection of its worker's pool (woken by [`super::pool::H1Pool`]'s notify) or for
//! a slot to free anywhere (the semaphore's own queue). While it waits, idle
//! connections of the cluster's other pools (other workers, other endpoints) are
//! closed, so that slots held by connections nobody uses come back.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, Mutex, PoisonError, Weak,
};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::pool::H1Pool;

/// A connection slot, given back when the connection closes.
pub(crate) type ConnectionSlot = OwnedSemaphorePermit;

/// Why a request could not get a connection under the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitRefused {
    /// `max_pending_requests` requests are waiting already.
    TooManyPending,
}

/// The cluster-wide connection cap and its waiting requests.
#[derive(Debug)]
pub(crate) struct ConnectionLimit {
    max_connections: u32,
    slots: Arc<Semaphore>,
    max_pending: Option<u32>,
    pending: AtomicU64,
    /// Requests that found the cap reached and had to wait.
    waited: AtomicU64,
    /// Requests refused because `max_pending_requests` were waiting.
    pending_overflows: AtomicU64,
    /// The HTTP/1.1 idle pools of the cluster's endpoints, all workers: where idle
    /// connections holding slots are found while a request waits.
    pools: Mutex<Vec<Weak<H1Pool>>>,
    /// Woken when a connection goes idle in a pool none of whose requests waits,
    /// while requests wait elsewhere: they close it to take its slot.
    idle_elsewhere: Notify,
}

/// A place among the waiting requests, given back when dropped.
#[derive(Debug)]
#[must_use = "the place is given back when the guard drops"]
pub(crate) struct Pending<'a>(&'a AtomicU64);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnectionLimit {
    /// At most `max_connections` open connections, at most `max_pending` requests
    /// waiting for one (unbounded when `None`).
    pub(crate) fn new(max_connections: u32, max_pending: Option<u32>) -> Self {
        let permits = usize::try_from(max_connections)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Self {
            max_connections,
            slots: Arc::new(Semaphore::new(permits)),
            max_pending,
            pending: AtomicU64::new(0),
            waited: AtomicU64::new(0),
            pending_overflows: AtomicU64::new(0),
            pools: Mutex::default(),
            idle_elsewhere: Notify::new(),
        }
    }

    /// A slot for a new connection, if fewer than `max_connections` are open.
    pub(crate) fn try_slot(&self) -> Option<ConnectionSlot> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Waits for a slot to free (a connection of the cluster closing). `None` only if
    /// the semaphore was closed, which this type never does.
    pub(crate) async fn freed_slot(&self) -> Option<ConnectionSlot> {
        self.slots.clone().acquire_owned().await.ok()
    }

    /// Counts a request that found the cap reached and takes it a place among the
    /// waiting ones.
    ///
    /// # Errors
    /// [`WaitRefused::TooManyPending`] when `max_pending_requests` are waiting.
    pub(crate) fn start_waiting(&self) -> Result<Pending<'_>, WaitRefused> {
        let before = self.pending.fetch_add(1, Ordering::Relaxed);
        if self.max_pending.is_some_and(|max| before >= u64::from(max)) {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            self.pending_overflows.fetch_add(1, Ordering::Relaxed);
            return Err(WaitRefused::TooManyPending);
        }
        self.waited.fetch_add(1, Ordering::Relaxed);
        Ok(Pending(&self.pending))
    }

    /// Tells the waiting requests, if any, that a connection went idle in a pool
    /// without waiters of its own.
    pub(crate) fn went_idle(&self) {
        if self.pending.load(Ordering::Relaxed) != 0 {
            self.idle_elsewhere.notify_waiters();
        }
    }

    /// Woken by [`ConnectionLimit::went_idle`]; create and enable it before
    /// [`ConnectionLimit::close_idle_elsewhere`].
    pub(crate) fn idle_elsewhere(&self) -> tokio::sync::futures::Notified<'_> {
        self.idle_elsewhere.notified()
    }

    /// Adds `pools` to the pools searched for idle connections; forgets pools that
    /// are gone.
    pub(crate) fn register_pools(&self, pools: &[Arc<H1Pool>]) {
        let mut all = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        all.retain(|p| p.strong_count() > 0);
        all.extend(pools.iter().map(Arc::downgrade));
    }

    /// Closes the oldest idle connection of a pool other than `mine`, freeing its
    /// slot; false when no other pool has one. The waiting path only.
    pub(crate) fn close_idle_elsewhere(&self, mine: &Arc<H1Pool>) -> bool {
        let closed = {
            let all = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
            all.iter()
                .filter_map(Weak::upgrade)
                .filter(|p| !Arc::ptr_eq(p, mine))
                .find_map(|p| p.take_oldest())
        };
        // Closed outside the lock: dropping the connection gives its slot back.
        closed.is_some()
    }

    /// The cap.
    pub(crate) fn max_connections(&self) -> u32 {
        self.max_connections
    }

    /// The bound on waiting requests, if any.
    pub(crate) fn max_pending(&self) -> Option<u32> {
        self.max_pending
    }

    /// Connections holding a slot now.
    pub(crate) fn open(&self) -> u64 {
        let free = u64::try_from(self.slots.available_permits()).unwrap_or(u64::MAX);
        u64::from(self.max_connections).saturating_sub(free)
    }

    /// Requests waiting now.
    pub(crate) fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Requests that found the cap reached and waited, since the limit was built.
    pub(crate) fn waited(&self) -> u64 {
        self.waited.load(Ordering::Relaxed)
    }

    /// Requests refused because `max_pending_requests` were waiting.
    pub(crate) fn pending_overflows(&self) -> u64 {
        self.pending_overflows.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn slots_are_capped_and_come_back() {
        let limit = ConnectionLimit::new(2, None);
        let a = limit.try_slot().expect("first");
        let _b = limit.try_slot().expect("second");
        assert!(limit.try_slot().is_none());
        assert_eq!(limit.open(), 2);
        drop(a);
        assert_eq!(limit.open(), 1);
        assert!(limit.try_slot().is_some());
    }

    #[test]
    fn waiting_requests_are_bounded_and_counted() {
        let limit = ConnectionLimit::new(1, Some(2));
        let one = limit.start_waiting().expect("first waits");
        let _two = limit.start_waiting().expect("second waits");
        assert_eq!(
            limit.start_waiting().unwrap_err(),
            WaitRefused::TooManyPending
        );
        assert_eq!((limit.pending(), limit.waited()), (2, 2));
        assert_eq!(limit.pending_overflows(), 1);
        drop(one);
        assert_eq!(limit.pending(), 1);
        assert!(limit.start_waiting().is_ok());
        // Without a bound, any number waits.
        let unbounded = ConnectionLimit::new(1, None);
        let all: Vec<_> = (0..100).map(|_| unbounded.start_waiting()).collect();
        assert!(all.iter().all(Result::is_ok));
    }

    #[tokio::test]
    async fn a_waiter_gets_the_slot_a_closing_connection_frees() {
        let limit = Arc::new(ConnectionLimit::new(1, None));
        let held = limit.try_slot().expect("the only slot");
        let waiter = {
            let limit = limit.clone();
            tokio::spawn(async move { limit.freed_slot().await.is_some() })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(held);
        assert!(waiter.await.expect("waiter task"));
    }

    #[test]
    fn without_idle_connections_nothing_is_closed_and_dropped_pools_are_forgotten() {
        let limit = ConnectionLimit::new(1, None);
        let mine = Arc::new(H1Pool::new(4, Duration::from_secs(60)));
        let other = Arc::new(H1Pool::new(4, Duration::from_secs(60)));
        limit.register_pools(&[mine.clone(), other.clone()]);
        // Nothing idle anywhere: nothing to close.
        assert!(!limit.close_idle_elsewhere(&mine));
        drop(other);
        limit.register_pools(&[]);
        assert_eq!(limit.pools.lock().unwrap().len(), 1);
    }
}
