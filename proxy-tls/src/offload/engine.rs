//! The engine trait and the unit of work it runs.

use std::{fmt, time::Instant};

use super::EngineStats;

type Deliver = Box<dyn FnOnce() + Send>;

/// A private-key operation (or the handshake step that contains one), ready to run on
/// an engine's thread. It runs in two parts: [`OffloadJob::execute`] does the work,
/// [`Delivery::deliver`] hands the result to whoever awaits it, so an engine can
/// account for the job in between.
pub struct OffloadJob {
    work: Box<dyn FnOnce() -> Deliver + Send>,
    queued_at: Instant,
}

/// The result of an executed [`OffloadJob`], not yet handed over.
pub struct Delivery(Deliver);

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Delivery")
    }
}

impl Delivery {
    /// Hands the result over (wakes the awaiting I/O task).
    pub fn deliver(self) {
        (self.0)();
    }
}

impl fmt::Debug for OffloadJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OffloadJob")
            .field("queued_at", &self.queued_at)
            .finish_non_exhaustive()
    }
}

impl OffloadJob {
    /// Wraps `work`, which reports its own result; the time of this call is the
    /// queueing time.
    pub fn new(work: impl FnOnce() + Send + 'static) -> Self {
        Self::split(work, |()| ())
    }

    /// A job whose result `compute` returns and `deliver` hands over.
    pub fn split<T: Send + 'static>(
        compute: impl FnOnce() -> T + Send + 'static,
        deliver: impl FnOnce(T) + Send + 'static,
    ) -> Self {
        Self {
            work: Box::new(move || {
                let result = compute();
                Box::new(move || deliver(result)) as Deliver
            }),
            queued_at: Instant::now(),
        }
    }

    /// When the job was created.
    pub fn queued_at(&self) -> Instant {
        self.queued_at
    }

    /// Does the work on the calling thread (an engine thread, never an I/O thread);
    /// the result is handed over by [`Delivery::deliver`].
    pub fn execute(self) -> Delivery {
        Delivery((self.work)())
    }

    /// Executes and delivers.
    pub fn run(self) {
        self.execute().deliver();
    }
}

/// An offload engine ("card"): runs private-key jobs on threads that are not the
/// proxy's I/O threads. See the [module docs](super) for the contract and how a
/// hardware engine plugs in.
pub trait OffloadEngine: fmt::Debug + Send + Sync + 'static {
    /// The engine's name, a metric label.
    fn name(&self) -> &str;

    /// Queues `job`. An engine that cannot take it (failed, full) returns it so the
    /// dispatcher can try another engine. An accepted job must eventually be run or
    /// dropped (dropping fails that handshake).
    ///
    /// # Errors
    /// The job itself, when refused.
    fn submit(&self, job: OffloadJob) -> Result<(), OffloadJob>;

    /// Jobs queued or running: the dispatcher's balancing signal.
    fn outstanding(&self) -> usize;

    /// Whether the engine takes work; the dispatcher skips unhealthy engines.
    fn is_healthy(&self) -> bool;

    /// The engine's counters (queue depth, operations, latency).
    fn stats(&self) -> &EngineStats;
}

/// Why an offloaded operation did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OffloadError {
    /// Every engine refused the job (and the fallback pool was unavailable).
    #[error("no offload engine accepted the job")]
    NoEngine,
    /// The engine dropped the job without running it (the engine failed).
    #[error("offload engine {engine} dropped the job")]
    Dropped {
        /// The engine's name.
        engine: String,
    },
}
