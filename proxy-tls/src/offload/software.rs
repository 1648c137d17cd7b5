//! The software engine: a dedicated thread pool per "card".

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Mutex,
    },
    thread,
};

use super::{priority, EngineStats, OffloadEngine, OffloadJob};
use crate::config::ThreadPriority;

/// Runs offload jobs on its own threads (not tokio's), scheduled at a
/// [`ThreadPriority`] (by default nice 19, so that on a shared core the I/O threads
/// preempt the signing work). Dropping the last handle closes the queue; the threads
/// finish the queued jobs and exit.
///
/// # Example
/// ```
/// use proxy_tls::{
///     config::ThreadPriority,
///     offload::{OffloadEngine, OffloadJob, SoftwareEngine},
/// };
///
/// let engine = SoftwareEngine::new("card0", 2).unwrap();
/// let (tx, rx) = std::sync::mpsc::channel();
/// engine.submit(OffloadJob::new(move || tx.send(6 * 7).unwrap())).unwrap();
/// assert_eq!(rx.recv().unwrap(), 42);
///
/// // Threads that run only when their core has nothing else to do.
/// let idle = SoftwareEngine::builder("card1")
///     .threads(1)
///     .priority(ThreadPriority::Idle)
///     .start()
///     .unwrap();
/// assert_eq!(idle.priority(), ThreadPriority::Idle);
/// ```
#[derive(Debug)]
pub struct SoftwareEngine {
    name: String,
    sender: mpsc::Sender<OffloadJob>,
    healthy: Arc<AtomicBool>,
    stats: Arc<EngineStats>,
    priority: ThreadPriority,
    /// Threads not started yet ([`SoftwareEngine::deferred`]): their count and queue.
    pending: Mutex<Option<(usize, Queue)>>,
}

type Queue = Arc<Mutex<mpsc::Receiver<OffloadJob>>>;

/// Builds a [`SoftwareEngine`]: its threads and their priority
/// ([`SoftwareEngine::builder`]).
#[derive(Debug, Clone)]
pub struct SoftwareEngineBuilder {
    name: String,
    threads: usize,
    priority: ThreadPriority,
}

impl SoftwareEngineBuilder {
    /// Worker threads (at least one; default one).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// How the threads are scheduled; default [`ThreadPriority::default`] (nice 19).
    /// A thread that cannot take it (`EPERM`, not Linux) logs a warning, once per
    /// engine, and runs at the priority it inherited.
    pub fn priority(mut self, priority: ThreadPriority) -> Self {
        self.priority = priority;
        self
    }

    /// Starts the engine's threads now.
    ///
    /// # Errors
    /// When no thread can be spawned.
    pub fn start(self) -> std::io::Result<SoftwareEngine> {
        let this = self.deferred();
        let pending = this.pending.lock().ok().and_then(|mut p| p.take());
        if let Some((threads, rx)) = pending {
            this.spawn(threads, &rx)?;
        }
        Ok(this)
    }

    /// An engine whose threads start with its first job, so that a config that is
    /// only validated starts none. Should no thread start then, the engine turns
    /// unhealthy and refuses its jobs (the dispatcher runs them elsewhere).
    pub fn deferred(self) -> SoftwareEngine {
        let (sender, rx) = mpsc::channel::<OffloadJob>();
        SoftwareEngine {
            name: self.name,
            sender,
            healthy: Arc::new(AtomicBool::new(true)),
            stats: Arc::new(EngineStats::default()),
            priority: self.priority,
            pending: Mutex::new(Some((self.threads.max(1), Arc::new(Mutex::new(rx))))),
        }
    }
}

impl SoftwareEngine {
    /// A builder for an engine named `name` (threads `tls-offload-<name>-<i>`).
    pub fn builder(name: &str) -> SoftwareEngineBuilder {
        SoftwareEngineBuilder {
            name: name.to_owned(),
            threads: 1,
            priority: ThreadPriority::default(),
        }
    }

    /// Starts an engine with `threads` worker threads named `tls-offload-<name>-<i>`
    /// at the default priority.
    ///
    /// # Errors
    /// When no thread can be spawned.
    pub fn new(name: &str, threads: usize) -> std::io::Result<Self> {
        Self::builder(name).threads(threads).start()
    }

    /// As [`SoftwareEngineBuilder::deferred`] with `threads` threads at the default
    /// priority.
    pub fn deferred(name: &str, threads: usize) -> Self {
        Self::builder(name).threads(threads).deferred()
    }

    /// How the engine's threads are scheduled.
    pub fn priority(&self) -> ThreadPriority {
        self.priority
    }

    /// Starts the threads of a deferred engine, once.
    fn start(&self) {
        let Some((threads, rx)) = self.pending.lock().ok().and_then(|mut p| p.take()) else {
            return;
        };
        if let Err(e) = self.spawn(threads, &rx) {
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

    /// Spawns `threads` workers on `rx`, each setting the engine's priority on
    /// itself first; an error when not even one started (those that did keep
    /// serving).
    fn spawn(&self, threads: usize, rx: &Queue) -> std::io::Result<()> {
        let name = &self.name;
        let warned = Arc::new(AtomicBool::new(false));
        let mut started = 0;
        for i in 0..threads {
            let (rx, stats, warned) = (rx.clone(), self.stats.clone(), warned.clone());
            let (engine, priority) = (name.clone(), self.priority);
            let spawned = thread::Builder::new()
                .name(format!("tls-offload-{name}-{i}"))
                .spawn(move || {
                    if let Err(error) = priority::apply(priority) {
                        if !warned.swap(true, Ordering::Relaxed) {
                            tracing::warn!(%engine, ?priority, %error, "offload engine threads keep the inherited priority");
                        }
                    }
                    worker(&rx, &stats)
                });
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

    /// Fields `n` (1-based, as proc(5) numbers them) of the calling thread's
    /// `/proc/thread-self/stat`.
    fn my_stat(fields: &[usize]) -> Option<Vec<i64>> {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
        // Fields from 3 on follow the command name, which is in parentheses.
        let rest: Vec<&str> = stat
            .get(stat.rfind(')')? + 1..)?
            .split_whitespace()
            .collect();
        fields
            .iter()
            .map(|&n| rest.get(n.checked_sub(3)?)?.parse().ok())
            .collect()
    }

    /// (nice, scheduling policy) of a thread of an engine at `priority`.
    fn seen_by_a_job(name: &str, priority: ThreadPriority) -> Option<Vec<i64>> {
        let engine = SoftwareEngine::builder(name)
            .priority(priority)
            .start()
            .ok()?;
        let (tx, rx) = mpsc::channel();
        let sent = engine.submit(OffloadJob::new(move || {
            let _ = tx.send(my_stat(&[19, 41]));
        }));
        assert!(sent.is_ok());
        rx.recv_timeout(std::time::Duration::from_secs(5)).ok()?
    }

    const SCHED_OTHER: i64 = 0;
    const SCHED_IDLE: i64 = 5;

    #[test]
    fn engine_threads_run_at_their_nice_value() {
        let Some(here) = my_stat(&[19, 41]) else {
            eprintln!("SKIPPED: no /proc/thread-self on this system");
            return;
        };
        assert_eq!(
            seen_by_a_job("nice15", ThreadPriority::Nice(15)),
            Some(vec![15, SCHED_OTHER])
        );
        // The default is the lowest ordinary priority.
        let engine = SoftwareEngine::new("nicedefault", 1);
        assert_eq!(
            engine.map(|e| e.priority()).ok(),
            Some(ThreadPriority::Nice(19))
        );
        assert_eq!(
            seen_by_a_job("nicedefault", ThreadPriority::default()),
            Some(vec![19, SCHED_OTHER])
        );
        // Out of range in code: clamped, never a raised priority.
        assert_eq!(
            seen_by_a_job("nice-5", ThreadPriority::Nice(-5)),
            Some(vec![1.max(here[0]), SCHED_OTHER])
        );
        // Normal: what the starting thread has.
        assert_eq!(seen_by_a_job("normal", ThreadPriority::Normal), Some(here));
    }

    #[test]
    fn idle_engine_threads_run_under_sched_idle() {
        if my_stat(&[41]).is_none() {
            eprintln!("SKIPPED: no /proc/thread-self on this system");
            return;
        }
        let seen = seen_by_a_job("idle", ThreadPriority::Idle);
        assert_eq!(seen.map(|s| s[1]), Some(SCHED_IDLE));
    }
}
