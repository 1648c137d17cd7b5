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
    /// Threads not started yet ([`SoftwareEngine::deferred`]): their count and queue.
    pending: Mutex<Option<(usize, Queue)>>,
}

type Queue = Arc<Mutex<mpsc::Receiver<OffloadJob>>>;

impl SoftwareEngine {
    /// Starts an engine with `threads` worker threads named `tls-offload-<name>-<i>`.
    ///
    /// # Errors
    /// When a thread cannot be spawned.
    pub fn new(name: &str, threads: usize) -> std::io::Result<Self> {
        let this = Self::deferred(name, threads);
        let pending = this.pending.lock().ok().and_then(|mut p| p.take());
        if let Some((threads, rx)) = pending {
            spawn(&this.name, threads, &rx, &this.stats)?;
        }
        Ok(this)
    }

    /// An engine whose threads start with its first job, so that a config that is
    /// only validated starts none. Should no thread start then, the engine turns
    /// unhealthy and refuses its jobs (the dispatcher runs them elsewhere).
    pub fn deferred(name: &str, threads: usize) -> Self {
        let (sender, rx) = mpsc::channel::<OffloadJob>();
        Self {
            name: name.to_owned(),
            sender,
            healthy: Arc::new(AtomicBool::new(true)),
            stats: Arc::new(EngineStats::default()),
            pending: Mutex::new(Some((threads.max(1), Arc::new(Mutex::new(rx))))),
        }
    }

    /// Starts the threads of a deferred engine, once.
    fn start(&self) {
        let Some((threads, rx)) = self.pending.lock().ok().and_then(|mut p| p.take()) else {
            return;
        };
        if let Err(e) = spawn(&self.name, threads, &rx, &self.stats) {
            tracing::error!(engine = %self.name, error = %e, "offload engine threads could not start");
            self.fail();
        }
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

/// Spawns `threads` workers on `rx`; an error when not even one started (those that
/// did keep serving).
fn spawn(name: &str, threads: usize, rx: &Queue, stats: &Arc<EngineStats>) -> std::io::Result<()> {
    let mut started = 0;
    for i in 0..threads {
        let (rx, stats) = (rx.clone(), stats.clone());
        let spawned = thread::Builder::new()
            .name(format!("tls-offload-{name}-{i}"))
            .spawn(move || worker(&rx, &stats));
        match spawned {
            Ok(_) => started += 1,
            Err(e) if started == 0 => return Err(e),
            Err(e) => {
                tracing::warn!(engine = %name, error = %e, "offload engine runs with fewer threads")
            }
        }
    }
    Ok(())
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
        self.start();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn threads_named(name: &str) -> Option<usize> {
        let tasks = std::fs::read_dir("/proc/self/task").ok()?;
        Some(
            tasks
                .filter_map(Result::ok)
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .filter(|comm| comm.trim_end() == name)
                .count(),
        )
    }

    #[test]
    fn a_deferred_engine_starts_its_threads_with_its_first_job() {
        let Some(0) = threads_named("tls-offload-lz-0") else {
            eprintln!("SKIPPED: no /proc/self/task on this system");
            return;
        };
        let engine = SoftwareEngine::deferred("lz", 1);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(threads_named("tls-offload-lz-0"), Some(0));
        let (tx, rx) = mpsc::channel();
        let sent = engine.submit(OffloadJob::new(move || {
            let _ = tx.send(thread::current().name().map(str::to_owned));
        }));
        assert!(sent.is_ok());
        let ran_on = rx.recv_timeout(std::time::Duration::from_secs(5));
        assert_eq!(ran_on, Ok(Some("tls-offload-lz-0".to_owned())));
    }
}
