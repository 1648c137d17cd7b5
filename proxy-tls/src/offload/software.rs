//! The software engine: a dedicated thread pool per "card".

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Mutex,
    },
    thread,
};

use super::{EngineStats, OffloadEngine, OffloadJob};

/// Runs offload jobs on its own threads (not tokio's). Dropping the last handle closes
/// the queue; the threads finish the queued jobs and exit.
///
/// # Example
/// ```
/// use proxy_tls::offload::{OffloadEngine, OffloadJob, SoftwareEngine};
///
/// let engine = SoftwareEngine::new("card0", 2).unwrap();
/// let (tx, rx) = std::sync::mpsc::channel();
/// engine.submit(OffloadJob::new(move || tx.send(6 * 7).unwrap())).unwrap();
/// assert_eq!(rx.recv().unwrap(), 42);
/// ```
#[derive(Debug)]
pub struct SoftwareEngine {
    name: String,
    sender: mpsc::Sender<OffloadJob>,
    healthy: Arc<AtomicBool>,
    stats: Arc<EngineStats>,
}

impl SoftwareEngine {
    /// Starts an engine with `threads` worker threads named `tls-offload-<name>-<i>`.
    ///
    /// # Errors
    /// When a thread cannot be spawned.
    pub fn new(name: &str, threads: usize) -> std::io::Result<Self> {
        let (sender, rx) = mpsc::channel::<OffloadJob>();
        let rx = Arc::new(Mutex::new(rx));
        let stats = Arc::new(EngineStats::default());
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let stats = stats.clone();
            thread::Builder::new()
                .name(format!("tls-offload-{name}-{i}"))
                .spawn(move || worker(&rx, &stats))?;
        }
        Ok(Self {
            name: name.to_owned(),
            sender,
            healthy: Arc::new(AtomicBool::new(true)),
            stats,
        })
    }

    /// Marks the engine failed: it refuses new jobs (the dispatcher routes around it).
    /// What a hardware engine does when its device reports an error.
    pub fn fail(&self) {
        self.healthy.store(false, Ordering::Release);
    }

    /// Marks the engine healthy again.
    pub fn recover(&self) {
        self.healthy.store(true, Ordering::Release);
    }
}

fn worker(rx: &Mutex<mpsc::Receiver<OffloadJob>>, stats: &EngineStats) {
    loop {
        let job = {
            let Ok(guard) = rx.lock() else { return };
            match guard.recv() {
                Ok(job) => job,
                Err(_) => return, // engine dropped
            }
        };
        let queued_at = job.queued_at();
        // Account before delivering, so whoever sees the result sees the count.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.execute())) {
            Ok(delivery) => {
                stats.finished(queued_at.elapsed(), true);
                delivery.deliver();
            }
            Err(_) => stats.finished(queued_at.elapsed(), false),
        }
    }
}

impl OffloadEngine for SoftwareEngine {
    fn name(&self) -> &str {
        &self.name
    }

    fn submit(&self, job: OffloadJob) -> Result<(), OffloadJob> {
        if !self.is_healthy() {
            self.stats.refused();
            return Err(job);
        }
        self.stats.queued();
        match self.sender.send(job) {
            Ok(()) => Ok(()),
            Err(mpsc::SendError(job)) => {
                self.stats.finished(job.queued_at().elapsed(), false);
                self.stats.refused();
                Err(job)
            }
        }
    }

    fn outstanding(&self) -> usize {
        self.stats.outstanding()
    }

    fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    fn stats(&self) -> &EngineStats {
        &self.stats
    }
}
