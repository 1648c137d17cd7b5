//! A `quic` section run beside a server that takes part in hot upgrades
//! (proxy-upgrade's `serve`): [`QuicRun`].

use std::{
    net::SocketAddr,
    sync::{mpsc, Mutex, MutexGuard, PoisonError},
    thread::JoinHandle,
};

use proxy_core::{DisplayChain, Server};
use tokio::sync::oneshot;

use super::{take_back, upgrade::Handover, InheritedUdp, Prepared, QuicStartError};
use crate::handoff::Handoff;

/// The HTTP/3 listeners of a `quic` section in a binary run by
/// [`proxy_upgrade::serve`]: started from its `on_running` hook
/// ([`start`](Self::start)) on a thread and tokio runtime of their own, their
/// counters on the server's admin metrics. In a hot upgrade they go over whole: a
/// process taking over starts them on the UDP sockets the old process handed over
/// (and forwards it the datagrams of its connections until they drained), and a
/// running process hands them over in the upgrades it serves.
///
/// After a roll-back (the new process died once it had the sockets) the hook runs
/// again for the server taken back, and the listeners start again for it on the
/// same UDP sockets: new HTTP/3 clients are served again, the connections of the
/// listeners before drain in them (their datagrams forwarded as in an upgrade),
/// and the next upgrade hands the new listeners over once those have drained.
///
/// Dropping it stops the listeners and waits until they drained (requests in flight
/// finish up to each listener's `drain_timeout`): keep it outside the hook (in an
/// `Arc`, the hook runs again for a server taken back after a roll-back) and drop
/// it once `serve` returned. The listeners also drain when the server drains.
///
/// # Example
/// ```no_run
/// use proxy_core::{config::Config, Registry, Server};
/// use proxy_quic::section::{self, QuicRun};
/// use proxy_upgrade::UpgradeOptions;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// // `alt-svc` added to the routes the HTTP/3 listeners serve; the section checked
/// // and its certificates loaded (all `--validate` needs).
/// let config = section::advertise(Config::load(std::path::Path::new("proxy.yaml"))?)?;
/// let quic = std::sync::Arc::new(QuicRun::new(section::prepare(&config)?));
/// let server = Server::new(config, Registry::default())?;
/// let mut options = UpgradeOptions::default();
/// options.socket = Some("/run/proxy.sock".into()); // serves upgrades there
/// let hook_quic = quic.clone(); // the hook's copy, dropped when `serve` returns
/// proxy_upgrade::serve(
///     server,
///     options,
///     |config| Server::new(config, Registry::default()),
///     move |running| hook_quic.start(running),
/// )?;
/// drop(quic); // after the server drained: the HTTP/3 listeners drain too
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct QuicRun {
    /// The section as prepared, no socket in it: each start starts a copy.
    section: Option<Prepared>,
    listeners: Mutex<Generations>,
}

/// Why the listeners of a [`QuicRun`] did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuicRunError {
    /// The listeners' runtime or thread could not be made.
    #[error("starting the HTTP/3 thread")]
    Thread(#[source] std::io::Error),
    /// A listener did not start (the others were stopped again).
    #[error("starting HTTP/3")]
    Start(#[source] QuicStartError),
    /// The listeners' thread ended before they started.
    #[error("the HTTP/3 thread stopped while starting")]
    Stopped,
}

impl QuicRun {
    /// The section to run ([`prepare`](super::prepare)); `None`: there is none, and
    /// [`start`](Self::start) starts nothing. Sockets it inherited are closed:
    /// [`start`](Self::start) takes those of the upgrade.
    pub fn new(prepared: Option<Prepared>) -> Self {
        Self {
            section: prepared.map(|p| p.listeners_only()),
            listeners: Mutex::default(),
        }
    }

    /// Starts the listeners, from [`proxy_upgrade::serve`]'s `on_running` hook: when
    /// this process takes over, on the UDP sockets the old one handed over (taking
    /// over the datagrams of its connections, [`Prepared::inherit`]), binding those
    /// not handed over; and registers their hand-over for the upgrades this process
    /// serves ([`Running::hand_over_datagrams`](proxy_upgrade::Running::hand_over_datagrams)).
    ///
    /// Called again, for the server taken back after a roll-back, it starts the
    /// listeners again for that server, on the UDP sockets of those before: these
    /// hand over to the new ones as to a new process (they read a forwarding
    /// channel and drain their connections; see [`Handoff`]), the new ones serve
    /// new connections with the taken-back server's routes and are handed over in
    /// the next upgrade, once the listeners before have drained. Should that fail,
    /// it is logged and the server serves on without HTTP/3 (failing the hook would
    /// stop the process).
    ///
    /// # Errors
    /// [`QuicRunError`] at the first start: a listener could not bind, its thread
    /// could not start. The hook fails with it, and `serve` drains the server (a
    /// process taking over leaves the old one serving).
    pub fn start(&self, running: &mut proxy_upgrade::Running<'_>) -> Result<(), QuicRunError> {
        let taken_over: Option<Vec<InheritedUdp>> = running.upgrade().map(|upgrade| {
            let sockets = upgrade.take_datagrams();
            sockets.into_iter().map(InheritedUdp::from).collect()
        });
        if let Some(sockets) = &taken_over {
            tracing::info!(sockets = sockets.len(), "QUIC sockets taken over");
        }
        if let Some(handoffs) = self.start_on(running.server(), taken_over)? {
            running.hand_over_datagrams(Handover(handoffs));
        }
        Ok(())
    }

    /// Each listener's name and bound UDP address; empty before the start.
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        lock(&self.listeners)
            .current
            .as_ref()
            .map(|l| l.addrs.clone())
            .unwrap_or_default()
    }

    /// Starts the section for `server` (the first time on the sockets `taken_over`,
    /// then again on those of the listeners before) and keeps the listeners; their
    /// hand-overs, or `None` when nothing started.
    fn start_on(
        &self,
        server: &Server,
        taken_over: Option<Vec<InheritedUdp>>,
    ) -> Result<Option<Vec<(String, Handoff)>>, QuicRunError> {
        let Some(section) = &self.section else {
            return Ok(None);
        };
        let mut generations = lock(&self.listeners);
        generations.reap();
        if !generations.started {
            let started = spawn(
                section
                    .listeners_only()
                    .inherit(taken_over.unwrap_or_default()),
                server,
            )?;
            generations.started = true;
            let handoffs = started.handoffs.clone();
            generations.current = Some(started);
            return Ok(Some(handoffs));
        }
        // A server taken back after a roll-back.
        let before = generations.current.take();
        let sockets = match before
            .as_ref()
            .map(|l| take_back::hand_over_here(&l.handoffs))
        {
            Some(Ok(sockets)) => sockets,
            None => Vec::new(),
            Some(Err(e)) => {
                tracing::error!(error = %e, "HTTP/3 not started again after the roll-back: its UDP sockets could not be taken over; new HTTP/3 clients are not served");
                generations.draining.extend(before.map(Listeners::retire));
                return Ok(None);
            }
        };
        // Their threads keep what they drain with; they end once it is done.
        generations.draining.extend(before.map(Listeners::retire));
        match spawn(section.listeners_only().inherit(sockets), server) {
            Ok(started) => {
                tracing::info!(
                    listeners = started.addrs.len(),
                    "HTTP/3 started again for the server taken back; the listeners before drain"
                );
                let handoffs = started.handoffs.clone();
                generations.current = Some(started);
                Ok(Some(handoffs))
            }
            Err(e) => {
                tracing::error!(error = %DisplayChain(&e), "HTTP/3 not started again after the roll-back; new HTTP/3 clients are not served");
                Ok(None)
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The listeners started: those of the server running now, and those of servers
/// before it (a roll-back took their place) still draining.
#[derive(Debug, Default)]
struct Generations {
    /// Whether the first start happened (the next ones follow a roll-back).
    started: bool,
    current: Option<Listeners>,
    draining: Vec<Listeners>,
}

impl Generations {
    /// Lets go of the draining listeners that have closed (their threads ended).
    fn reap(&mut self) {
        self.draining.retain(|l| !l.has_ended());
    }
}

impl Drop for Generations {
    /// Stops every listener first, then waits for each: they drain side by side.
    fn drop(&mut self) {
        for listeners in self.current.iter_mut().chain(&mut self.draining) {
            listeners.signal_stop();
        }
    }
}

/// The listeners running on their thread; they drain when the server drains or this
/// drops, and the thread ends once they closed.
#[derive(Debug)]
struct Listeners {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    addrs: Vec<(String, SocketAddr)>,
    /// Their hand-overs, while they are the current ones.
    handoffs: Vec<(String, Handoff)>,
}

impl Listeners {
    /// No longer the current ones: their hand-overs are let go of.
    fn retire(mut self) -> Self {
        self.handoffs.clear();
        self
    }

    /// Whether their thread has ended (they all closed).
    fn has_ended(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Tells them to drain, without waiting.
    fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// What the listeners' thread reports once they started.
type Started = Result<(Vec<(String, SocketAddr)>, Vec<(String, Handoff)>), QuicStartError>;

/// Binds and serves the listeners on a thread and runtime of their own (a failure to
/// bind fails the start), their counters added to `server`'s admin metrics. The
/// thread ends once they all closed (the server drained, or they were handed off
/// and drained) or once told to stop and they drained.
fn spawn(prepared: Prepared, server: &Server) -> Result<Listeners, QuicRunError> {
    let (stop, stopped) = oneshot::channel();
    let (started_tx, started) = mpsc::channel::<Started>();
    let server = server.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(QuicRunError::Thread)?;
    let thread = std::thread::Builder::new()
        .name("quic".into())
        .spawn(move || {
            runtime.block_on(async move {
                let mut running = match prepared.start(&server) {
                    Ok(running) => running,
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                        return;
                    }
                };
                let addrs = running.local_addrs();
                for (name, address) in &addrs {
                    tracing::info!(listener = %name, %address, "http/3 listener started");
                }
                let _ = server.clone().with_metrics(running.metrics_hook());
                let handoffs = running.handoffs();
                let _ = started_tx.send(Ok((addrs, handoffs.clone())));
                let stop = tokio::select! {
                    _ = stopped => true,
                    () = running.closed() => false,
                };
                if stop {
                    running.stop().await;
                }
                log_drained(&handoffs);
            });
        })
        .map_err(QuicRunError::Thread)?;
    let mut listeners = Listeners {
        stop: Some(stop),
        thread: Some(thread),
        addrs: Vec::new(),
        handoffs: Vec::new(),
    };
    match started.recv() {
        Ok(Ok((addrs, handoffs))) => {
            listeners.addrs = addrs;
            listeners.handoffs = handoffs;
            Ok(listeners)
        }
        Ok(Err(e)) => Err(QuicRunError::Start(e)),
        Err(_) => Err(QuicRunError::Stopped),
    }
}

/// Logs what each listener handed off received forwarded until it drained.
fn log_drained(handoffs: &[(String, Handoff)]) {
    for (name, handoff) in handoffs.iter().filter(|(_, h)| h.is_handed_off()) {
        let stats = handoff.stats();
        tracing::info!(
            listener = %name,
            received_forwarded = stats.received_forwarded,
            bad_forwarded = stats.bad_forwarded,
            "QUIC listener drained after the hand-off"
        );
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.signal_stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
