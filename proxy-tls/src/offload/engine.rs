//! The engine trait and the unit of work it runs.

use std::{fmt, time::Instant};

use super::EngineStats;

/// A private-key operation (or the handshake step that contains one), ready to run on
/// an engine's thread.
pub struct OffloadJob {
    work: Box<dyn FnOnce() + Send>,
    queued_at: Instant,
}

impl fmt::Debug for OffloadJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OffloadJob")
            .field("queued_at", &self.queued_at)
            .finish_non_exhaustive()
    }
}

impl OffloadJob {
    /// Wraps `work`; the time of this call is the queueing time.
    pub fn new(work: impl FnOnce() + Send + 'static) -> Self {
        Self {
            work: Box::new(work),
            queued_at: Instant::now(),
        }
    }

    /// When the job was created.
    pub fn queued_at(&self) -> Instant {
        self.queued_at
    }

    /// Runs the job on the calling thread (an engine thread, never an I/O thread).
    /// The job reports its own result to whoever awaits it.
    pub fn run(self) {
        (self.work)();
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
