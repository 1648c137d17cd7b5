//! A value rebuilt from certificate material when the material changes, swapped
//! whole with `arc-swap`.

use std::{
    path::PathBuf,
    sync::{mpsc, Arc, Mutex, OnceLock, Weak},
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::secrets::{OnChange, SecretSource};
use crate::{error::ConfigBuildError, metrics::TlsMetrics};

/// Something built from material, with a signal that fires when it is replaced.
#[derive(Debug)]
pub(crate) struct Generation<T> {
    /// The built value (TLS configs).
    pub(crate) value: T,
    superseded: watch::Sender<bool>,
}

impl<T> Generation<T> {
    fn new(value: T) -> Self {
        Self {
            value,
            superseded: watch::channel(false).0,
        }
    }

    /// Resolves once a newer generation replaced this one.
    pub(crate) async fn superseded(&self) {
        let mut rx = self.superseded.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }
}

type Build<T> = Box<dyn Fn() -> Result<T, ConfigBuildError> + Send + Sync>;
type Stamp = Option<(SystemTime, u64)>;

/// A value built from files and secrets, rebuilt and swapped when they change.
pub(crate) struct Reloadable<T> {
    what: String,
    build: Build<T>,
    current: ArcSwap<Generation<T>>,
    files: Vec<PathBuf>,
    stamps: Mutex<Vec<Stamp>>,
    metrics: Arc<TlsMetrics>,
    on_secret: OnceLock<Arc<OnChange>>,
    /// The file poller, started by the first [`Reloadable::current`] (a config that is
    /// only validated starts no thread): its interval, and the receiving end of
    /// `_stop_poller`, taken when it starts.
    poller: Option<(Duration, Mutex<Option<mpsc::Receiver<()>>>)>,
    poller_started: std::sync::Once,
    me: Weak<Self>,
    /// Dropped with this value: the file poller's `recv_timeout` then returns at once
    /// and the thread ends (rather than sleeping out its poll interval).
    _stop_poller: Option<mpsc::Sender<()>>,
}

impl<T> std::fmt::Debug for Reloadable<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloadable")
            .field("what", &self.what)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

fn stamp(path: &PathBuf) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl<T: Send + Sync + 'static> Reloadable<T> {
    /// Builds the first value (an error refuses the config) and watches: `secrets` on
    /// every change from now, `files` every `poll` (none when `None`) once the value
    /// is first used.
    pub(crate) fn start(
        what: String,
        files: Vec<PathBuf>,
        secrets: Option<&Arc<dyn SecretSource>>,
        poll: Option<Duration>,
        metrics: Arc<TlsMetrics>,
        build: Build<T>,
    ) -> Result<Arc<Self>, ConfigBuildError> {
        let stamps = files.iter().map(stamp).collect();
        let first = build()?;
        let poll = poll.filter(|p| !p.is_zero() && !files.is_empty());
        let (stop_tx, poller) = match poll {
            Some(interval) => {
                let (tx, rx) = mpsc::channel::<()>();
                (Some(tx), Some((interval, Mutex::new(Some(rx)))))
            }
            None => (None, None),
        };
        let this = Arc::new_cyclic(|me| Self {
            what,
            build,
            current: ArcSwap::from_pointee(Generation::new(first)),
            files,
            stamps: Mutex::new(stamps),
            metrics,
            on_secret: OnceLock::new(),
            poller,
            poller_started: std::sync::Once::new(),
            me: me.clone(),
            _stop_poller: stop_tx,
        });
        if let Some(secrets) = secrets {
            let weak = Arc::downgrade(&this);
            let f: Arc<OnChange> = Arc::new(move || {
                if let Some(this) = weak.upgrade() {
                    let _ = this.reload();
                }
            });
            secrets.subscribe(Arc::downgrade(&f));
            let _ = this.on_secret.set(f);
        }
        Ok(this)
    }

    /// The current generation; the first call starts the file poller.
    pub(crate) fn current(&self) -> Arc<Generation<T>> {
        self.poller_started.call_once(|| self.start_poller());
        self.current.load_full()
    }

    fn start_poller(&self) {
        let Some((interval, stop)) = &self.poller else {
            return;
        };
        let Some(stop) = stop.lock().ok().and_then(|mut s| s.take()) else {
            return;
        };
        let (weak, interval) = (self.me.clone(), *interval);
        let spawned = std::thread::Builder::new()
            .name("tls-rotation-poll".into())
            .spawn(move || poll_loop(&weak, &stop, interval));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the certificate file poller");
        }
    }

    /// Rebuilds from the material now; on success swaps it in and signals the
    /// replaced generation, on failure keeps the running one.
    ///
    /// # Errors
    /// Why the new material was refused.
    pub(crate) fn reload(&self) -> Result<(), ConfigBuildError> {
        match (self.build)() {
            Ok(value) => {
                let old = self.current.swap(Arc::new(Generation::new(value)));
                old.superseded.send_replace(true);
                self.metrics.rotation(true);
                tracing::info!(what = %self.what, "tls material rotated");
                Ok(())
            }
            Err(err) => {
                self.metrics.rotation(false);
                tracing::error!(what = %self.what, error = %crate::error_chain(&err), "tls material refused; the running material stays");
                Err(err)
            }
        }
    }

    /// Reloads if a watched file's modification time or size changed.
    pub(crate) fn check_files(&self) {
        let now: Vec<Stamp> = self.files.iter().map(stamp).collect();
        let changed = match self.stamps.lock() {
            Ok(mut stamps) if *stamps != now => {
                *stamps = now;
                true
            }
            _ => false,
        };
        if changed {
            let _ = self.reload();
        }
    }
}

/// Checks the files every `poll` until the value is dropped (its sender with it).
fn poll_loop<T: Send + Sync + 'static>(
    weak: &Weak<Reloadable<T>>,
    stop: &mpsc::Receiver<()>,
    poll: Duration,
) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(poll) {
        let Some(this) = weak.upgrade() else { return };
        this.check_files();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Threads of this process whose name starts with `prefix` (Linux).
    fn threads_named(prefix: &str) -> Option<usize> {
        let tasks = std::fs::read_dir("/proc/self/task").ok()?;
        Some(
            tasks
                .filter_map(Result::ok)
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .filter(|name| name.starts_with(prefix))
                .count(),
        )
    }

    #[test]
    fn the_file_poller_ends_with_its_owner_after_50_reloads() {
        let Some(before) = threads_named("tls-rotation") else {
            eprintln!("SKIPPED: no /proc/self/task on this system");
            return;
        };
        let dir = std::env::temp_dir().join(format!("proxy-tls-poller-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let file = dir.join("cert.pem");
        std::fs::write(&file, "x").unwrap_or_else(|e| panic!("{e}"));
        let mut current = None;
        // A listener rebuilt by 50 config reloads, each with a long poll interval.
        for i in 0..50u32 {
            let r = Reloadable::start(
                format!("generation {i}"),
                vec![file.clone()],
                None,
                Some(Duration::from_secs(3600)),
                Arc::default(),
                Box::new(move || Ok(i)),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            let _ = r.current();
            current = Some(r);
        }
        let alive = |n: usize| {
            (0..200).any(|_| {
                let now = threads_named("tls-rotation").unwrap_or(usize::MAX);
                if now == n {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(10));
                false
            })
        };
        assert!(alive(before + 1), "only the live generation polls");
        let unused = Reloadable::start(
            "validated only".into(),
            vec![file.clone()],
            None,
            Some(Duration::from_secs(3600)),
            Arc::default(),
            Box::new(|| Ok(0)),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        std::thread::sleep(Duration::from_millis(50));
        assert!(alive(before + 1), "a value never used starts no poller");
        drop(unused);
        drop(current);
        assert!(alive(before), "no poller outlives its owner");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
