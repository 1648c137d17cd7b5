//! One dispatcher over several engines: least outstanding work first, failed engines
//! skipped, refused jobs retried on the next engine.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Instant,
};

use tokio::sync::oneshot;

use super::{OffloadEngine, OffloadError, OffloadJob};

/// Balances offload jobs over engines by outstanding work and routes around failed
/// ones. Cheap to clone.
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use proxy_tls::offload::{Dispatcher, OffloadEngine, SoftwareEngine};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let cards: Vec<Arc<dyn OffloadEngine>> = vec![
///     Arc::new(SoftwareEngine::new("card0", 1).unwrap()),
///     Arc::new(SoftwareEngine::new("card1", 1).unwrap()),
/// ];
/// let dispatcher = Dispatcher::new(cards);
/// let answer = dispatcher.run(|| 6 * 7).await.unwrap();
/// assert_eq!(answer, 42);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct Dispatcher {
    engines: Arc<[Arc<dyn OffloadEngine>]>,
    next: Arc<AtomicUsize>,
}

impl Dispatcher {
    /// A dispatcher over `engines` (may be empty: every job then fails over to the
    /// runtime's blocking pool).
    pub fn new(engines: Vec<Arc<dyn OffloadEngine>>) -> Self {
        Self {
            engines: engines.into(),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The engines.
    pub fn engines(&self) -> &[Arc<dyn OffloadEngine>] {
        &self.engines
    }

    /// Engine indices, healthy ones by outstanding work (ties rotated so equal engines
    /// share the load).
    fn order(&self) -> Vec<usize> {
        let n = self.engines.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut idx: Vec<usize> = (0..n)
            .map(|i| (start + i) % n.max(1))
            .filter(|&i| self.engines[i].is_healthy())
            .collect();
        idx.sort_by_key(|&i| self.engines[i].outstanding());
        idx
    }

    /// Runs `f` on the least busy healthy engine and awaits its result without
    /// blocking the calling task's thread.
    ///
    /// When every engine refuses, the job runs on tokio's blocking pool (never on the
    /// I/O thread); outside a runtime it fails with [`OffloadError::NoEngine`]. If the
    /// returned future is dropped before an engine starts the job, `f` is not run.
    ///
    /// # Errors
    /// [`OffloadError::Dropped`] when the chosen engine dropped the job unrun;
    /// [`OffloadError::NoEngine`] as above.
    pub async fn run<T, F>(&self, f: F) -> Result<T, OffloadError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        // A caller gone before its job starts (a handshake that timed out, a client
        // that hung up) leaves the flag set: the engine skips the work rather than
        // sign for nobody while live handshakes queue behind it.
        let abandoned = Arc::new(AtomicBool::new(false));
        let _abandon_on_drop = AbandonOnDrop(abandoned.clone());
        let compute = move || (!abandoned.load(Ordering::Acquire)).then(f);
        let mut job = Some(OffloadJob::split(compute, move |r| {
            let _ = tx.send(r);
        }));
        let mut chosen = None;
        for i in self.order() {
            let Some(j) = job.take() else { break };
            match self.engines[i].submit(j) {
                Ok(()) => {
                    chosen = Some(i);
                    break;
                }
                Err(back) => job = Some(back),
            }
        }
        let (Some(i), None) = (chosen, job.as_ref()) else {
            let Some(job) = job else {
                return Err(OffloadError::NoEngine);
            };
            let handle =
                tokio::runtime::Handle::try_current().map_err(|_| OffloadError::NoEngine)?;
            let started = Instant::now();
            handle
                .spawn_blocking(move || job.run())
                .await
                .map_err(|_| OffloadError::NoEngine)?;
            tracing::debug!(elapsed = ?started.elapsed(), "offload job ran on the blocking pool: no engine accepted it");
            return rx.await.ok().flatten().ok_or(OffloadError::NoEngine);
        };
        rx.await
            .ok()
            .flatten()
            .ok_or_else(|| OffloadError::Dropped {
                engine: self.engines[i].name().to_owned(),
            })
    }
}

/// Marks a job abandoned when the future waiting for it is dropped.
struct AbandonOnDrop(Arc<AtomicBool>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;
    use crate::offload::SoftwareEngine;

    fn engines(n: usize) -> (Vec<Arc<SoftwareEngine>>, Dispatcher) {
        let cards: Vec<Arc<SoftwareEngine>> = (0..n)
            .map(|i| Arc::new(SoftwareEngine::new(&format!("card{i}"), 1).unwrap()))
            .collect();
        let d = Dispatcher::new(
            cards
                .iter()
                .map(|c| c.clone() as Arc<dyn OffloadEngine>)
                .collect(),
        );
        (cards, d)
    }

    #[tokio::test]
    async fn jobs_run_off_the_calling_thread() {
        let (_cards, d) = engines(1);
        let me = std::thread::current().id();
        let name = d
            .run(move || {
                assert_ne!(std::thread::current().id(), me);
                std::thread::current().name().map(str::to_owned)
            })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("tls-offload-card0-0"));
    }

    #[tokio::test]
    async fn load_spreads_by_outstanding_work() {
        let (cards, d) = engines(2);
        // Occupy card0 with a slow job; the next jobs go to card1.
        let slow = {
            let d = d.clone();
            tokio::spawn(async move {
                d.run(|| std::thread::sleep(Duration::from_millis(300)))
                    .await
                    .unwrap()
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        for _ in 0..10 {
            d.run(|| ()).await.unwrap();
        }
        slow.await.unwrap();
        let ops: Vec<u64> = cards.iter().map(|c| c.stats().operations()).collect();
        assert_eq!(ops.iter().sum::<u64>(), 11);
        assert!(
            ops.contains(&1),
            "the busy card took more than its slow job: {ops:?}"
        );
    }

    #[tokio::test]
    async fn abandoned_jobs_are_skipped() {
        let (_cards, d) = engines(1);
        let slow = {
            let d = d.clone();
            tokio::spawn(async move {
                d.run(|| std::thread::sleep(Duration::from_millis(300)))
                    .await
                    .unwrap()
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        // 20 handshakes give up while queued behind the slow one.
        let done = Arc::new(AtomicUsize::new(0));
        for _ in 0..20 {
            let done = done.clone();
            let r = tokio::time::timeout(
                Duration::from_millis(1),
                d.run(move || done.fetch_add(1, Ordering::SeqCst)),
            )
            .await;
            assert!(r.is_err(), "queued behind the slow job");
        }
        slow.await.unwrap();
        // A live job after them runs (the queue is FIFO: the abandoned ones went first).
        assert_eq!(d.run(|| 7).await.unwrap(), 7);
        assert_eq!(done.load(Ordering::SeqCst), 0, "abandoned work was done");
    }

    #[tokio::test]
    async fn a_failed_engine_is_routed_around() {
        let (cards, d) = engines(2);
        cards[0].fail();
        for _ in 0..8 {
            d.run(|| ()).await.unwrap();
        }
        assert_eq!(cards[0].stats().operations(), 0);
        assert_eq!(cards[1].stats().operations(), 8);
        cards[1].fail();
        // Every engine failed: the job still runs, on the blocking pool.
        assert_eq!(d.run(|| 5).await.unwrap(), 5);
        cards[0].recover();
        d.run(|| ()).await.unwrap();
        assert_eq!(cards[0].stats().operations(), 1);
    }

    #[test]
    fn metrics_render_per_engine() {
        let (cards, _d) = engines(2);
        let m = crate::offload::OffloadMetrics::default();
        for c in &cards {
            m.track(c.clone());
        }
        let mut out = String::new();
        m.render(&mut out);
        assert!(
            out.contains("proxy_tls_offload_queue_depth{engine=\"card1\"} 0"),
            "{out}"
        );
        assert!(out.contains("proxy_tls_offload_latency_seconds_count{engine=\"card0\"} 0"));
    }
}
