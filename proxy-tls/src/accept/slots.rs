//! `max_handshakes_in_progress`: a cap, per worker, on handshakes whose ClientHello
//! flight the server is computing.

use std::{num::NonZeroU32, sync::Arc, sync::OnceLock};

use proxy_core::metrics::PerWorker;
use tokio::sync::{Semaphore, SemaphorePermit, TryAcquireError};

use crate::metrics::TlsMetrics;

/// One semaphore per worker (made on the worker's first handshake), so a worker's
/// I/O thread interleaves at most `cap` handshakes with its open connections.
/// Waiters are served in arrival order.
#[derive(Debug)]
pub(crate) struct HandshakeSlots {
    cap: usize,
    per_worker: PerWorker<OnceLock<Semaphore>>,
    metrics: Arc<TlsMetrics>,
}

impl HandshakeSlots {
    pub(crate) fn new(cap: NonZeroU32, metrics: Arc<TlsMetrics>) -> Self {
        Self {
            cap: usize::try_from(cap.get()).unwrap_or(usize::MAX),
            per_worker: PerWorker::default(),
            metrics,
        }
    }

    /// A slot of the calling worker, waiting (counted) while all are taken. The
    /// handshake holds it until the permit drops.
    pub(crate) async fn acquire(&self) -> Option<SemaphorePermit<'_>> {
        let slots = self
            .per_worker
            .local()
            .get_or_init(|| Semaphore::new(self.cap.min(Semaphore::MAX_PERMITS)));
        match slots.try_acquire() {
            Ok(permit) => Some(permit),
            Err(TryAcquireError::NoPermits) => {
                let _waiting = self.metrics.waiting_for_slot();
                // Never closed: `None` cannot happen, and would only skip the cap.
                slots.acquire().await.ok()
            }
            Err(TryAcquireError::Closed) => None,
        }
    }
}
