//! A value rebuilt from certificate material when the material changes, swapped
//! whole with `arc-swap`.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, OnceLock, Weak},
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
    /// Builds the first value (an error refuses the config) and starts watching:
    /// `files` every `poll` (none when zero), and `secrets` on every change.
    pub(crate) fn start(
        what: String,
        files: Vec<PathBuf>,
        secrets: Option<&Arc<dyn SecretSource>>,
        poll: Duration,
        metrics: Arc<TlsMetrics>,
        build: Build<T>,
    ) -> Result<Arc<Self>, ConfigBuildError> {
        let stamps = files.iter().map(stamp).collect();
        let first = build()?;
        let this = Arc::new(Self {
            what,
            build,
            current: ArcSwap::from_pointee(Generation::new(first)),
            files,
            stamps: Mutex::new(stamps),
            metrics,
            on_secret: OnceLock::new(),
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
        if !poll.is_zero() && !this.files.is_empty() {
            let weak = Arc::downgrade(&this);
            let spawned = std::thread::Builder::new()
                .name("tls-rotation-poll".into())
                .spawn(move || poll_loop(&weak, poll));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "could not start the certificate file poller");
            }
        }
        Ok(this)
    }

    /// The current generation.
    pub(crate) fn current(&self) -> Arc<Generation<T>> {
        self.current.load_full()
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

fn poll_loop<T: Send + Sync + 'static>(weak: &Weak<Reloadable<T>>, poll: Duration) {
    loop {
        std::thread::sleep(poll);
        let Some(this) = weak.upgrade() else { return };
        this.check_files();
    }
}
