//! The `quic` section: HTTP/3 listeners serving the routes and filters of a TCP
//! listener (proxy-quic's `QuicSection`), on a thread of their own, their counters
//! on the admin endpoint's metrics. In a hot upgrade their UDP sockets go to the
//! new process, which forwards this one the datagrams of its connections until
//! they drained (proxy-quic's `handoff`).

use std::{
    sync::{mpsc, Mutex, PoisonError},
    thread::JoinHandle,
};

use anyhow::Context as _;
use proxy_core::{config::Config, ConfigError, DisplayChain, Server};
use proxy_quic::{
    handoff::{Generation, Handoff},
    section::{InheritedUdp, Prepared, QuicSection},
};
use proxy_upgrade::{DatagramSource, HandedOffDatagram};
use tokio::sync::oneshot;

/// Adds the `alt-svc` header of the HTTP/3 listeners with `alt_svc` to the routes of
/// the TCP listeners they serve: applied to every config loaded, start and reload.
pub(crate) fn advertise(mut config: Config) -> Result<Config, ConfigError> {
    if let Some(section) = QuicSection::from_config(&config)? {
        section.advertise(&mut config);
    }
    Ok(config)
}

/// The checked section with its certificates loaded; `None` without a section.
/// Starts nothing (what `--validate` runs).
pub(crate) fn prepare(config: &Config) -> Result<Option<Prepared>, ConfigError> {
    QuicSection::from_config(config)?
        .map(|section| section.prepare(config))
        .transpose()
}

/// The `quic` section of a run: started once the server runs ([`Quic::start`]),
/// stopped (after the listeners drained) when dropped.
pub(crate) struct Quic {
    prepared: Mutex<Option<Prepared>>,
    listeners: Mutex<Option<Listeners>>,
}

impl Quic {
    /// The section to start; `None`: there is none.
    pub(crate) fn new(prepared: Option<Prepared>) -> Self {
        Self {
            prepared: Mutex::new(prepared),
            listeners: Mutex::new(None),
        }
    }

    /// Starts the listeners, from `serve`'s `on_running` hook: when this process
    /// takes over, on the UDP sockets the old one handed over (taking over the
    /// datagrams of its connections), and hands them over in the upgrades this
    /// process serves.
    pub(crate) fn start(&self, running: &mut proxy_upgrade::Running<'_>) -> anyhow::Result<()> {
        let Some(mut prepared) = lock(&self.prepared).take() else {
            return Ok(());
        };
        if let Some(upgrade) = running.upgrade() {
            let inherited: Vec<_> = upgrade
                .take_datagrams()
                .into_iter()
                .map(|d| InheritedUdp {
                    name: d.record.name,
                    socket: d.socket,
                    forward: d
                        .forward
                        .and_then(|f| Some((f.socket, Generation::from_bit(f.generation)?))),
                })
                .collect();
            tracing::info!(sockets = inherited.len(), "QUIC sockets taken over");
            prepared = prepared.inherit(inherited);
        }
        let listeners = spawn(prepared, running.server())?;
        running.hand_over_datagrams(Handover(listeners.handoffs.clone()));
        *lock(&self.listeners) = Some(listeners);
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The listeners' UDP sockets as a hot upgrade hands them over.
struct Handover(Vec<(String, Handoff)>);

impl DatagramSource for Handover {
    fn datagram_sockets(&self) -> std::io::Result<Vec<HandedOffDatagram>> {
        self.0
            .iter()
            .map(|(name, handoff)| {
                let given = handoff.prepare()?;
                Ok(HandedOffDatagram {
                    name: name.clone(),
                    worker: 0,
                    socket: given.socket,
                    forward: Some((given.forward, given.generation.bit())),
                })
            })
            .collect()
    }

    fn hand_off_datagrams(&self) {
        for (name, handoff) in &self.0 {
            match handoff.hand_off() {
                Ok(()) => {
                    tracing::info!(listener = %name, "QUIC listener handed off; its connections drain")
                }
                Err(e) => {
                    tracing::warn!(listener = %name, error = %e, "QUIC listener hand-off failed; it drains")
                }
            }
        }
    }

    fn keep_datagrams(&self) {
        for (_, handoff) in &self.0 {
            handoff.abandon();
        }
    }
}

/// The HTTP/3 listeners running on their thread; they drain when the server drains
/// or this drops.
struct Listeners {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    handoffs: Vec<(String, Handoff)>,
}

/// Binds and serves the listeners on a thread of their own (a failure to bind fails
/// the start), their counters added to `server`'s admin metrics.
fn spawn(prepared: Prepared, server: &Server) -> anyhow::Result<Listeners> {
    let (stop, stopped) = oneshot::channel();
    let (started_tx, started) = mpsc::channel();
    let server = server.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the QUIC runtime")?;
    let thread = std::thread::Builder::new()
        .name("quic".into())
        .spawn(move || {
            runtime.block_on(async move {
                let running = match prepared.start(&server) {
                    Ok(running) => running,
                    Err(e) => {
                        let _ = started_tx.send(Err(anyhow::anyhow!("{}", DisplayChain(&e))));
                        return;
                    }
                };
                for (name, address) in running.local_addrs() {
                    tracing::info!(listener = %name, %address, "quic listener started");
                }
                let _ = server.clone().with_metrics(running.metrics_hook());
                let _ = started_tx.send(Ok(running.handoffs()));
                let _ = stopped.await;
                running.stop().await;
            });
        })
        .context("spawning the QUIC thread")?;
    let mut listeners = Listeners {
        stop: Some(stop),
        thread: Some(thread),
        handoffs: Vec::new(),
    };
    match started.recv() {
        Ok(Ok(handoffs)) => {
            listeners.handoffs = handoffs;
            Ok(listeners)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => {
            listeners.stop.take();
            Err(anyhow::anyhow!("the QUIC thread stopped while starting"))
        }
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
