//! The server: worker runtimes, listeners, live config swap, graceful drain and the
//! admin endpoint.

mod accept_errors;
mod admin;
pub use admin::{AdminPage, MetricsHook};
mod carry;
mod conn;
mod drain_signal;
mod embed;
mod h1;
mod h1_tunnel;
mod h1_wait;
mod h2;
mod handoff;
mod handoff_layer;
mod handoff_protocol;
mod listen;
mod open_files;
mod runtime;
mod service;
mod spawn;

use std::{
    collections::HashMap,
    os::fd::OwnedFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use tokio::{runtime::Handle, sync::watch};

pub use self::embed::{HttpListener, HttpListenerBuilder};
pub use self::handoff::HandedOffConnection;
pub use self::handoff_layer::{LayerHandOver, LayerHandOverResult, LayerState};
use self::listen::{Bound, ListenerRuntime};
pub use self::open_files::{raise_open_files_limit, OpenFilesLimit};
pub use self::service::ListenerNotRunning;
pub(crate) use self::{handoff::HandoffSlot, handoff_protocol::Detach};
use crate::{
    access_log::{AccessLog, LineCounts},
    config::{Config, RuntimeFlavor},
    snapshot::Snapshot,
    BoxError, ConfigError, HttpResponse, Registry,
};

/// Where a reload reads the new config from (the `--config` file, say).
pub type ConfigSource = Arc<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

/// Why the server could not start or reload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The config was refused; the running config stays.
    #[error("invalid config")]
    Config(#[from] ConfigError),
    /// A listener or the admin endpoint could not bind, or a runtime could not start.
    #[error("{what}")]
    Io {
        /// What failed.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No config source was given, so there is nothing to reload from.
    #[error("no config source to reload from")]
    NoSource,
}

/// A running proxy server.
///
/// # Example
/// ```no_run
/// use proxy_core::{config::Config, Registry, Server};
///
/// let config = Config::from_yaml(&std::fs::read_to_string("proxy.yaml").unwrap()).unwrap();
/// let server = Server::new(config, Registry::default()).unwrap();
/// server.run().unwrap(); // until SIGTERM/SIGINT, then drains
/// ```
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    snapshot: ArcSwap<Snapshot>,
    listeners: Mutex<HashMap<String, Arc<ListenerRuntime>>>,
    workers: Mutex<Vec<Handle>>,
    drain: watch::Sender<bool>,
    source: Mutex<Option<ConfigSource>>,
    access_log: Arc<ArcSwap<Option<Arc<AccessLog>>>>,
    /// The top-level access log's line counts, kept across reloads.
    access_log_counts: Arc<LineCounts>,
    reload_lock: Mutex<()>,
    /// Hot upgrade: sockets handed in (until started); duplicates of the running
    /// listeners' sockets (dropped when they stop) and the admin's, to hand over; and
    /// whether they were, so that the Unix socket files stay.
    inherited: Mutex<Vec<(String, OwnedFd)>>,
    sockets: Mutex<HashMap<String, Vec<OwnedFd>>>,
    admin_socket: Mutex<Option<OwnedFd>>,
    handed_off: AtomicBool,
    /// Idle connections handed out during a hot upgrade (`handoff.rs`).
    handoff: Arc<handoff::HandoffSlot>,
    /// Counter and histogram values carried in from the process this one replaced
    /// (`carry.rs`).
    metric_offsets: ArcSwap<crate::metrics::MetricOffsets>,
    /// Pages and metrics added to the admin endpoint (`admin.rs`).
    admin_extensions: Mutex<admin::Extensions>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}

impl Server {
    /// Validates `config` and prepares a server; nothing is bound until [`Server::run`].
    ///
    /// # Errors
    /// [`ServerError::Config`] naming the first bad field.
    pub fn new(config: Config, registry: Registry) -> Result<Self, ServerError> {
        // Before any stats are created: one shard per worker.
        crate::metrics::set_shard_count(crate::upstream::worker_count(&config.runtime));
        let snapshot = Snapshot::build(config, &registry, None)?;
        let access_log_counts = Arc::new(LineCounts::default());
        let access_log = open_access_log(&snapshot.config, &access_log_counts)?;
        Ok(Self {
            inner: Arc::new(Inner {
                registry,
                snapshot: ArcSwap::from_pointee(snapshot),
                listeners: Mutex::new(HashMap::new()),
                workers: Mutex::new(Vec::new()),
                drain: watch::channel(false).0,
                source: Mutex::new(None),
                access_log: Arc::new(ArcSwap::from_pointee(access_log)),
                access_log_counts,
                reload_lock: Mutex::new(()),
                inherited: Mutex::default(),
                sockets: Mutex::default(),
                admin_socket: Mutex::default(),
                handed_off: AtomicBool::new(false),
                handoff: Arc::default(),
                metric_offsets: ArcSwap::default(),
                admin_extensions: Mutex::default(),
            }),
        })
    }

    /// Sets where [`Server::reload_from_source`] (SIGHUP, admin `POST /reload`) reads
    /// the new config from.
    pub fn with_config_source(self, source: ConfigSource) -> Self {
        *lock(&self.inner.source) = Some(source);
        self
    }

    /// The current config snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.snapshot.load_full()
    }

    /// Runs the server on the calling thread until SIGTERM or SIGINT, then drains
    /// in-flight requests (up to `runtime.drain_timeout`) and returns. SIGHUP reloads
    /// from the config source.
    ///
    /// # Errors
    /// When a runtime cannot start or a listener cannot bind.
    pub fn run(&self) -> Result<(), ServerError> {
        let server = self.clone();
        self.run_until(async move { server.wait_for_signals().await })
    }

    /// Runs the server on the calling thread until `shutdown` completes (or
    /// [`Server::drain`] is called), then drains and returns. Installs no signal
    /// handlers: for embedding the server and for tests. First raises the process's
    /// soft open-file limit to the hard one, unless `runtime.raise_open_files_limit`
    /// is `false` ([`crate::raise_open_files_limit`]).
    ///
    /// # Errors
    /// When a runtime cannot start or a listener cannot bind.
    pub fn run_until<F>(&self, shutdown: F) -> Result<(), ServerError>
    where
        F: std::future::Future<Output = ()>,
    {
        let snapshot = self.snapshot();
        let n = crate::upstream::worker_count(&snapshot.config.runtime);
        let (done_tx, done_rx) = watch::channel(false);
        let mut threads = Vec::new();
        let mut handles = Vec::new();
        let per_core = snapshot.config.runtime.flavor == RuntimeFlavor::PerCore;
        if snapshot.config.runtime.raise_open_files_limit {
            open_files::raise_and_log();
        }
        crate::worker::set_index(0);
        let main_rt = if per_core {
            runtime::build_runtime()?
        } else {
            runtime::build_multi_thread_runtime(n)?
        };
        handles.push(main_rt.handle().clone());
        for i in (1..n).filter(|_| per_core) {
            let rt = runtime::build_runtime()?;
            handles.push(rt.handle().clone());
            let mut done = done_rx.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("proxy-worker-{i}"))
                    .spawn(move || {
                        crate::worker::set_index(i);
                        rt.block_on(async move {
                            let _ = done.wait_for(|d| *d).await;
                        })
                    })
                    .map_err(|source| ServerError::Io {
                        what: "spawning a worker thread".into(),
                        source,
                    })?,
            );
        }
        *lock(&self.inner.workers) = handles;
        let result = main_rt.block_on(async {
            // Moved in and dropped once started: the running server holds only the
            // current snapshot, so a reload retires the first config's parts (pools,
            // cluster extensions) as it does any later one's.
            let snapshot = snapshot;
            snapshot.activate();
            self.start_listeners(&snapshot)?;
            let admin_address = snapshot.config.admin.as_ref().map(|a| a.address);
            drop(snapshot);
            if let Some(listener) = self.bind_admin(admin_address)? {
                tokio::spawn(admin::serve(listener, self.clone()));
            }
            tokio::spawn(evict_idle_loop(self.clone()));
            let mut drain = self.inner.drain.subscribe();
            tokio::select! {
                () = shutdown => {}
                _ = drain.wait_for(|d| *d) => {}
            }
            self.drain().await;
            Ok(())
        });
        let _ = done_tx.send(true);
        for t in threads {
            let _ = t.join();
        }
        result
    }

    /// Waits for SIGTERM or SIGINT, reloading from the config source on each SIGHUP
    /// meanwhile: what [`Server::run`] passes to [`Server::run_until`].
    pub async fn wait_for_signals(&self) {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return std::future::pending().await;
        };
        loop {
            tokio::select! {
                _ = term.recv() => return,
                _ = int.recv() => return,
                _ = hup.recv() => {
                    let server = self.clone();
                    // Off the worker: building a snapshot can take a while.
                    let result = tokio::task::spawn_blocking(move || server.reload_from_source())
                        .await
                        .unwrap_or(Err(ServerError::NoSource));
                    match result {
                        Ok(()) => tracing::info!("config reloaded (SIGHUP)"),
                        Err(e) => tracing::error!(error = %DisplayChain(&e), "config reload refused (SIGHUP)"),
                    }
                }
            }
        }
    }

    /// Stops accepting, lets in-flight requests finish (up to the drain timeout) and
    /// closes idle connections.
    pub async fn drain(&self) {
        let _ = self.inner.drain.send(true);
        let listeners: Vec<_> = lock(&self.inner.listeners).values().cloned().collect();
        lock(&self.inner.sockets).clear();
        for l in &listeners {
            self.stop_listener(l);
        }
        let deadline = tokio::time::Instant::now() + self.snapshot().config.runtime.drain_timeout;
        tracing::info!("draining");
        while tokio::time::Instant::now() < deadline {
            let active: u64 = listeners.iter().map(|l| l.stats.active()).sum();
            if active == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::info!("drained");
        // Every connection is handed out or closed: the receiver sees the end.
        self.inner.handoff.store(None);
        // The last requests' access log lines: written before the process exits.
        if let Some(log) = &**self.inner.access_log.load() {
            let until = tokio::time::Instant::now() + Duration::from_secs(1);
            while !log.writer().is_idle() && tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    /// Asks a running server to stop: [`Server::run`] / [`Server::run_until`] drain and
    /// return.
    pub fn shutdown(&self) {
        let _ = self.inner.drain.send(true);
    }

    /// Whether the server is draining.
    pub fn is_draining(&self) -> bool {
        *self.inner.drain.borrow()
    }

    /// Re-reads the config from the config source and applies it.
    ///
    /// # Errors
    /// When there is no source, or the new config is invalid (the running one stays).
    pub fn reload_from_source(&self) -> Result<(), ServerError> {
        let source = lock(&self.inner.source)
            .clone()
            .ok_or(ServerError::NoSource)?;
        let config = source()?;
        self.reload(config)
    }

    /// Validates `config` whole, then swaps it in: routes and clusters at once for every
    /// request, filters and limits for new connections; listeners added are bound,
    /// listeners removed stop accepting and drain. In-flight requests finish on the
    /// config they started with. A bad config changes nothing.
    ///
    /// # Errors
    /// When the config is invalid or a new listener cannot bind.
    pub fn reload(&self, config: Config) -> Result<(), ServerError> {
        let _one_at_a_time = lock(&self.inner.reload_lock);
        let old = self.snapshot();
        let snapshot = Snapshot::build(config, &self.inner.registry, Some(&old))?;
        let access_log = if snapshot.config.access_log == old.config.access_log {
            (**self.inner.access_log.load()).clone()
        } else {
            open_access_log(&snapshot.config, &self.inner.access_log_counts)?
        };
        // Bind new listeners first, so that a bind failure leaves everything as it was.
        let running: HashMap<String, Arc<ListenerRuntime>> = lock(&self.inner.listeners).clone();
        let mut to_start = Vec::new();
        for plan in &snapshot.listeners {
            match running.get(&plan.config.name) {
                Some(rt) if rt.address == plan.config.address => {}
                _ => to_start.push((plan, self.bind_or_inherit(&plan.config)?)),
            }
        }
        self.inner.access_log.store(Arc::new(access_log));
        let mut listeners = lock(&self.inner.listeners);
        for plan in &snapshot.listeners {
            if let Some(rt) = listeners.get(&plan.config.name) {
                if rt.address == plan.config.address {
                    rt.update(plan);
                }
            }
        }
        for (name, rt) in running.iter() {
            let kept = snapshot
                .listeners
                .iter()
                .any(|p| &p.config.name == name && p.config.address == rt.address);
            if !kept {
                self.stop_listener(rt);
                lock(&self.inner.sockets).remove(name);
                listeners.remove(name);
            }
        }
        for (plan, bound) in to_start {
            self.start_bound(&mut listeners, plan, bound);
        }
        drop(listeners);
        // Cluster extensions start their tasks on the server's runtime, whoever calls
        // reload; before the server runs, `run` activates them.
        let runtime = lock(&self.inner.workers).first().cloned();
        if let Some(handle) = runtime {
            let _entered = handle.enter();
            snapshot.activate();
        }
        self.inner.snapshot.store(Arc::new(snapshot));
        Ok(())
    }

    fn start_listeners(&self, snapshot: &Snapshot) -> Result<(), ServerError> {
        let mut bound = Vec::new();
        for plan in &snapshot.listeners {
            bound.push((plan, self.bind_or_inherit(&plan.config)?));
        }
        let mut listeners = lock(&self.inner.listeners);
        for (plan, b) in bound {
            self.start_bound(&mut listeners, plan, b);
        }
        Ok(())
    }

    fn start_bound(
        &self,
        listeners: &mut HashMap<String, Arc<ListenerRuntime>>,
        plan: &crate::snapshot::ListenerPlan,
        bound: Vec<Bound>,
    ) {
        let rt = ListenerRuntime::new(plan, bound.first().and_then(Bound::local_addr));
        let dups = bound.iter().filter_map(|b| b.try_clone_fd().ok()).collect();
        lock(&self.inner.sockets).insert(plan.config.name.clone(), dups);
        let workers = lock(&self.inner.workers).clone();
        for (i, b) in bound.into_iter().enumerate() {
            let handle = workers.get(i % workers.len().max(1)).cloned();
            handle
                .unwrap_or_else(Handle::current)
                .spawn(listen::accept_loop_with(
                    b,
                    rt.clone(),
                    self.inner.drain.subscribe(),
                    self.inner.access_log.clone(),
                    Some(self.inner.handoff.clone()),
                ));
        }
        listeners.insert(plan.config.name.clone(), rt);
    }

    /// Stops accepting; a Unix listener's socket file goes too, unless handed off.
    fn stop_listener(&self, l: &ListenerRuntime) {
        let _ = l.stop.send(true);
        if let crate::config::ListenAddress::Unix(path) = &l.address {
            if !self.inner.handed_off.load(Ordering::Relaxed) {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Running listeners by name, with their bound addresses (the actual port when the
    /// config asked for port 0).
    pub fn listener_addresses(&self) -> Vec<(String, String)> {
        lock(&self.inner.listeners)
            .values()
            .map(|l| {
                (
                    l.name.to_string(),
                    l.local
                        .map_or_else(|| l.address.to_string(), |a| a.to_string()),
                )
            })
            .collect()
    }
}

async fn evict_idle_loop(server: Server) {
    let mut tick = tokio::time::interval(crate::upstream::pool::IDLE_SWEEP);
    loop {
        tick.tick().await;
        for c in server.snapshot().clusters.values() {
            c.evict_expired();
        }
    }
}

/// The top-level access log, its path resolved from the config file's directory.
/// Opens nothing and starts nothing: the writer thread opens the file with the first
/// line.
fn open_access_log(
    config: &Config,
    counts: &Arc<LineCounts>,
) -> Result<Option<Arc<AccessLog>>, ServerError> {
    Ok(AccessLog::from_config(config, counts.clone())?.map(Arc::new))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The response for an error that reached the edge of the request stack.
pub(crate) fn error_response(err: &BoxError) -> HttpResponse {
    crate::proxy::reply_for_error(err)
}

/// Displays an error with its sources, `a: b: c`.
pub struct DisplayChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cur = self.0.source();
        while let Some(e) = cur {
            write!(f, ": {e}")?;
            cur = e.source();
        }
        Ok(())
    }
}
