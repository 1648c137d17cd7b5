//! A `quic` section run beside a server that takes part in hot upgrades
//! (proxy-upgrade's `serve`): [`QuicRun`].

use std::{
    net::SocketAddr,
    sync::{mpsc, Mutex, MutexGuard, PoisonError},
    thread::JoinHandle,
};

use proxy_core::Server;
use tokio::sync::oneshot;

use super::{upgrade::Handover, InheritedUdp, Prepared, QuicStartError};
use crate::handoff::Handoff;

/// The HTTP/3 listeners of a `quic` section in a binary run by
/// [`proxy_upgrade::serve`]: started from its `on_running` hook
/// ([`start`](Self::start)) on a thread and tokio runtime of their own, their
/// counters on the server's admin metrics. In a hot upgrade they go over whole: a
/// process taking over starts them on the UDP sockets the old process handed over
/// (and forwards it the datagrams of its connections until they drained), and a
/// running process hands them over in the upgrades it serves.
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
    prepared: Mutex<Option<Prepared>>,
    listeners: Mutex<Option<Listeners>>,
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
    /// [`start`](Self::start) starts nothing.
    pub fn new(prepared: Option<Prepared>) -> Self {
        Self {
            prepared: Mutex::new(prepared),
            listeners: Mutex::new(None),
        }
    }

    /// Starts the listeners, from [`proxy_upgrade::serve`]'s `on_running` hook: when
    /// this process takes over, on the UDP sockets the old one handed over (taking
    /// over the datagrams of its connections, [`Prepared::inherit`]), binding those
    /// not handed over; and registers their hand-over for the upgrades this process
    /// serves ([`Running::hand_over_datagrams`](proxy_upgrade::Running::hand_over_datagrams)).
    /// Once started, a second call starts nothing.
    ///
    /// # Errors
    /// [`QuicRunError`]: a listener could not bind, its thread could not start. The
    /// hook fails with it, and `serve` drains the server (a process taking over
    /// leaves the old one serving).
    pub fn start(&self, running: &mut proxy_upgrade::Running<'_>) -> Result<(), QuicRunError> {
        let Some(prepared) = lock(&self.prepared).take() else {
            return Ok(());
        };
        let taken_over: Option<Vec<InheritedUdp>> = running.upgrade().map(|upgrade| {
            let sockets = upgrade.take_datagrams();
            sockets.into_iter().map(InheritedUdp::from).collect()
        });
        if let Some(sockets) = &taken_over {
            tracing::info!(sockets = sockets.len(), "QUIC sockets taken over");
        }
        let inherited = taken_over.unwrap_or_default();
        let handoffs = self.start_on(prepared.inherit(inherited), running.server())?;
        running.hand_over_datagrams(Handover(handoffs));
        Ok(())
    }

    /// Each listener's name and bound UDP address; empty before the start.
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        lock(&self.listeners)
            .as_ref()
            .map(|l| l.addrs.clone())
            .unwrap_or_default()
    }

    /// Starts `prepared` on its thread and keeps the listeners; their hand-overs.
    fn start_on(
        &self,
        prepared: Prepared,
        server: &Server,
    ) -> Result<Vec<(String, Handoff)>, QuicRunError> {
        let listeners = spawn(prepared, server)?;
        let handoffs = listeners.handoffs.clone();
        *lock(&self.listeners) = Some(listeners);
        Ok(handoffs)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The listeners running on their thread; they drain when the server drains or this
/// drops.
#[derive(Debug)]
struct Listeners {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    addrs: Vec<(String, SocketAddr)>,
    handoffs: Vec<(String, Handoff)>,
}

/// What the listeners' thread reports once they started.
type Started = Result<(Vec<(String, SocketAddr)>, Vec<(String, Handoff)>), QuicStartError>;

/// Binds and serves the listeners on a thread and runtime of their own (a failure to
/// bind fails the start), their counters added to `server`'s admin metrics.
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
                let running = match prepared.start(&server) {
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
                let _ = started_tx.send(Ok((addrs, running.handoffs())));
                let _ = stopped.await;
                running.stop().await;
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

impl Drop for Listeners {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        for (name, handoff) in self.handoffs.iter().filter(|(_, h)| h.is_handed_off()) {
            let stats = handoff.stats();
            tracing::info!(
                listener = %name,
                received_forwarded = stats.received_forwarded,
                bad_forwarded = stats.bad_forwarded,
                "QUIC listener drained after the hand-off"
            );
        }
    }
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
