//! The `quic` section: HTTP/3 listeners serving the routes and filters of a TCP
//! listener (proxy-quic's `QuicSection`), on a thread of their own, their counters
//! on the admin endpoint's metrics.

use std::{sync::mpsc, thread::JoinHandle};

use anyhow::Context as _;
use proxy_core::{config::Config, ConfigError, DisplayChain, Server};
use proxy_quic::section::{Prepared, QuicSection};
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

/// The HTTP/3 listeners running on their thread; they drain when the server drains
/// or this drops.
pub(crate) struct Listeners {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Binds and serves the listeners on a thread of their own (a failure to bind fails
/// the start), their counters added to `server`'s admin metrics.
pub(crate) fn spawn(prepared: Prepared, server: &Server) -> anyhow::Result<Listeners> {
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
                let _ = started_tx.send(Ok(()));
                let _ = stopped.await;
                running.stop().await;
            });
        })
        .context("spawning the QUIC thread")?;
    let mut listeners = Listeners {
        stop: Some(stop),
        thread: Some(thread),
    };
    match started.recv() {
        Ok(Ok(())) => Ok(listeners),
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
    }
}
