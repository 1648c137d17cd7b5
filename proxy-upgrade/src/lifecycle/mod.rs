//! A binary's whole hot-upgrade life in one call, [`serve`]: take over from the
//! process serving the upgrade socket (with `take_over`), serve upgrades there, roll
//! back when the new process dies within its window, adopt the connections handed
//! over, start `SIGUSR2` upgrades, and run what must run beside the server (an xDS
//! client) once it runs.

mod options;
mod take_back;

use std::{
    any::Any,
    sync::{Arc, Mutex},
};

use proxy_core::{config::Config, BoxError, DisplayChain, Server, ServerError};

#[cfg(feature = "cli")]
pub use options::UpgradeArgs;
pub use options::UpgradeOptions;

use crate::{signal, Handover, Upgrade, UpgradeClient, UpgradeError, UpgradeHandle, UpgradeServer};

/// Why [`serve`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// `take_over`: no process to take over from, or the hand-over failed; nothing
    /// was bound.
    #[error("taking over from the process at {}", path.display())]
    TakeOver {
        /// The upgrade socket.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: UpgradeError,
    },
    /// The upgrade socket could not be bound.
    #[error("cannot serve upgrades")]
    Upgrades(#[source] UpgradeError),
    /// The server could not start (a runtime, a listener).
    #[error("the server failed")]
    Server(#[from] ServerError),
    /// The `on_running` hook failed; the server drained and stopped.
    #[error("starting beside the server")]
    OnRunning(#[source] BoxError),
    /// The server taken back after a roll-back stopped by a panic.
    #[error("the server taken back stopped abruptly")]
    TakenBack,
}

/// The server as it starts running, given to [`serve`]'s `on_running` hook.
///
/// Further parts of the hand-over plug in here: a hook that has sockets of its own to
/// take over (QUIC's UDP sockets, say) takes them from [`Running::upgrade`] before
/// the hand-over completes.
pub struct Running<'a> {
    server: &'a Server,
    upgrade: Option<&'a mut Upgrade>,
    datagrams: Option<Arc<dyn crate::DatagramSource>>,
}

impl std::fmt::Debug for Running<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("taking_over", &self.upgrade.is_some())
            .finish_non_exhaustive()
    }
}

impl Running<'_> {
    /// The running server.
    pub fn server(&self) -> &Server {
        self.server
    }

    /// When this process is taking over: the upgrade in progress (listeners received,
    /// `ready` not sent yet). `None` for a process that started on its own, and for
    /// the server it starts again on its listeners after a roll-back.
    pub fn upgrade(&mut self) -> Option<&mut Upgrade> {
        self.upgrade.as_deref_mut()
    }

    /// Hands the UDP sockets of `source` (QUIC listeners) over too in the upgrades
    /// this process serves (see [`UpgradeServer::datagrams`]).
    pub fn hand_over_datagrams(&mut self, source: impl crate::DatagramSource) {
        self.datagrams = Some(Arc::new(source));
    }
}

/// What starts a server again on the listening sockets taken back in a roll-back,
/// from the current config of the server that handed off.
type Rebuild = Arc<dyn Fn(Config) -> Result<Server, BoxError> + Send + Sync>;

/// [`serve`]'s `on_running` hook, boxed: run for the first server and again for each
/// server taken back; what it returns lives until that server's shutdown starts.
type Hook = Arc<dyn Fn(&mut Running<'_>) -> Result<Box<dyn Any>, BoxError> + Send + Sync>;

/// Runs `server` until SIGTERM/SIGINT (SIGHUP reloads) or until it hands off to a
/// new process, taking part in hot upgrades as `options` say; returns once drained.
///
/// - `options.take_over`: first takes the listeners of the process serving
///   `options.socket` (and fails, binding nothing, when there is none), serves on
///   them, tells it to drain, adopts the connections it hands over, and then serves
///   the next upgrade on the same path.
/// - `options.socket` alone: serves upgrades there from the start (the path in use
///   fails the start). If a new process dies within its hand-off window, the
///   listeners are taken back: `rebuild` gets the current config and returns the
///   server (its registry, its config source) that accepts on them and adopts the
///   connections not handed over yet; it runs on a thread until SIGTERM and `serve`
///   returns when it stopped. `on_running` runs for it too (an xDS client starts
///   again), with no [`Running::upgrade`].
/// - `options.on_signal`: while serving upgrades, `SIGUSR2` starts that command
///   (the new binary with `--upgrade`), see [`Reexec`](crate::Reexec).
/// - `on_running` runs on the server's runtime once its listeners accept, before a
///   take-over completes, and again for each server taken back after a roll-back;
///   what it returns lives until that server's shutdown starts (an xDS client, say).
///   If it fails, the server drains and `serve` returns the error (a process taking
///   over then leaves the old one serving).
///
/// ```no_run
/// use proxy_core::{config::Config, Registry, Server};
/// use proxy_upgrade::{Reexec, UpgradeOptions};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::load(std::path::Path::new("proxy.yaml"))?;
/// let server = Server::new(config, Registry::default())?;
/// let options = UpgradeOptions::serving("/run/proxy/upgrade.sock")
///     .taking_over(std::env::args().any(|a| a == "--upgrade"))
///     .on_signal(Reexec::current()?);
/// proxy_upgrade::serve(
///     server,
///     options,
///     |config| Server::new(config, Registry::default()),
///     |running| {
///         tracing::info!(listeners = ?running.server().listener_addresses(), "serving");
///         Ok::<_, std::io::Error>(())
///     },
/// )?;
/// # Ok(()) }
/// ```
///
/// # Errors
/// See [`ServeError`].
pub fn serve<R, E, H, G, HE>(
    server: Server,
    options: UpgradeOptions,
    rebuild: R,
    on_running: H,
) -> Result<(), ServeError>
where
    R: Fn(Config) -> Result<Server, E> + Send + Sync + 'static,
    E: Into<BoxError>,
    H: Fn(&mut Running<'_>) -> Result<G, HE> + Send + Sync + 'static,
    G: 'static,
    HE: Into<BoxError>,
{
    let rebuild: Rebuild = Arc::new(move |config| rebuild(config).map_err(Into::into));
    let on_running: Hook = Arc::new(move |running| match on_running(running) {
        Ok(guard) => Ok(Box::new(guard) as Box<dyn Any>),
        Err(e) => Err(e.into()),
    });
    run(server, options, rebuild, on_running)
}

/// [`serve`] with its closures boxed: what the server taken back runs as well.
fn run(
    server: Server,
    options: UpgradeOptions,
    rebuild: Rebuild,
    on_running: Hook,
) -> Result<(), ServeError> {
    let mut taking_over = match (&options.socket, options.take_over) {
        (Some(path), true) => Some(
            UpgradeClient::new(path)
                .handoff_window(options.handoff_window)
                .connect()
                .map_err(|source| ServeError::TakeOver {
                    path: path.clone(),
                    source,
                })?,
        ),
        _ => None,
    };
    // Bound before serving (a path in use fails the start), unless the old process
    // holds it until the hand-off.
    let successor = take_back::Successor::default();
    let upgrades_on = |server: &Server| {
        options.socket.as_ref().map(|path| {
            UpgradeServer::bind(path).map(|u| {
                u.on_rollback(take_back::take_back(
                    server,
                    options.clone(),
                    rebuild.clone(),
                    on_running.clone(),
                    successor.clone(),
                ))
            })
        })
    };
    let mut upgrades = match &taking_over {
        None => upgrades_on(&server)
            .transpose()
            .map_err(ServeError::Upgrades)?,
        Some(_) => None,
    };
    let server = match taking_over.as_mut() {
        Some(u) => server.with_inherited_listeners(u.take_sockets()),
        None => server,
    };
    let handle = server.clone();
    // Kept past the run: stopped once the server drained, it waits for the last idle
    // connections to go over to the next process.
    let service: Arc<Mutex<Option<UpgradeHandle>>> = Arc::default();
    let running = service.clone();
    let failed: Mutex<Option<BoxError>> = Mutex::default();
    let result = server.run_until(async {
        // Registered first: from here on SIGUSR2 no longer ends the process.
        let usr2 = options.on_signal.as_ref().and_then(|_| {
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2())
                .inspect_err(|e| tracing::error!(error = %e, "cannot handle SIGUSR2"))
                .ok()
        });
        let mut hook = Running {
            server: &handle,
            upgrade: taking_over.as_mut(),
            datagrams: None,
        };
        let started = on_running(&mut hook);
        let datagrams = hook.datagrams.take();
        let _guard = match started {
            Ok(guard) => guard,
            Err(e) => {
                *lock(&failed) = Some(e);
                return;
            }
        };
        if let Some(u) = taking_over {
            match tokio::task::spawn_blocking(move || u.finish_handing_over()).await {
                Ok(Ok(handover)) => {
                    tracing::info!("took over; the old process hands its idle connections over, drains and exits");
                    adopt(handover, handle.clone());
                }
                Ok(Err(e)) => tracing::warn!(error = %DisplayChain(&e), "the old process did not confirm the hand-off"),
                Err(e) => tracing::warn!(error = %e, "hand-off task failed"),
            }
            upgrades = upgrades_on(&handle).and_then(|u| {
                u.inspect_err(|e| tracing::error!(error = %DisplayChain(e), "cannot serve upgrades"))
                    .ok()
            });
        }
        let started = upgrades.and_then(|u| {
            u.datagram_source(datagrams)
                .spawn(handle.clone())
                .inspect_err(|e| tracing::error!(error = %DisplayChain(e), "cannot serve upgrades"))
                .ok()
        });
        let serving = started.is_some();
        *lock(&running) = started;
        if let (true, Some(usr2), Some(reexec)) = (serving, usr2, options.on_signal.clone()) {
            let service = running.clone();
            tokio::spawn(signal::upgrade_on_signal(usr2, reexec, move || {
                lock(&service).as_ref().is_some_and(UpgradeHandle::handed_off)
            }));
        }
        handle.wait_for_signals().await;
    });
    let service = lock(&service).take();
    if let Some(service) = service {
        // After a roll-back, the connections the server handed out until it drained
        // went to its successor in this process.
        service.stop();
    }
    let again = lock(&successor).take();
    if let Some(thread) = again {
        tracing::info!("rolled back: this process serves on");
        return thread.join().unwrap_or(Err(ServeError::TakenBack));
    }
    result?;
    let failed = lock(&failed).take();
    failed.map_or(Ok(()), |e| Err(ServeError::OnRunning(e)))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Serves the connections the old process hands over, on a thread of their own
/// (each waits for the old process's next one).
fn adopt(handover: Handover, server: Server) {
    let spawned = std::thread::Builder::new()
        .name("upgrade-adopt".into())
        .spawn(move || match handover.adopt_into(&server) {
            Ok(n) => tracing::info!(
                connections = n,
                "adopted the old process's idle connections"
            ),
            Err(e) => {
                tracing::warn!(error = %DisplayChain(&e), "the hand-over of connections stopped")
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot receive the old process's connections");
    }
}
