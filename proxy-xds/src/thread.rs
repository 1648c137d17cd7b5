//! The client on a thread of its own, for a server whose `run` holds the calling
//! thread (the sidecar): a small current-thread runtime, stopped by its handle or
//! when the server drains.

use std::{thread::JoinHandle, time::Duration};

use proxy_core::Server;
use tokio::sync::watch;

use crate::XdsClient;

/// How often the thread looks whether the server is draining.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// The client running on its own thread ([`XdsClient::spawn`]). Dropping it asks the
/// thread to stop; [`XdsThread::stop`] also waits for it.
#[derive(Debug)]
pub struct XdsThread {
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl XdsClient {
    /// Runs the client against `server` on a new thread (`xds-client`) with a
    /// current-thread tokio runtime of its own, until the returned handle is stopped
    /// or dropped, or the server drains. Call it once the server runs (from the
    /// future given to `Server::run_until`): each config the control plane sends is
    /// applied with `Server::reload`.
    ///
    /// # Errors
    /// When the runtime or the thread cannot be created.
    ///
    /// # Example
    /// ```no_run
    /// use proxy_core::{config::Config, Registry, Server};
    /// use proxy_xds::{XdsClient, XdsConfig};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let base = Config::load(std::path::Path::new("proxy.yaml"))?;
    /// let section = base.xds.clone().unwrap_or_default();
    /// let xds = XdsConfig::from_section(&section).map_err(|e| e.within("xds"))?;
    /// let client = XdsClient::new(xds, base);
    /// let server = Server::new(client.initial_config(), Registry::default())?;
    /// let handle = server.clone();
    /// server.run_until(async move {
    ///     let _xds = client.spawn(handle.clone()); // stops when dropped
    ///     handle.wait_for_signals().await;
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn spawn(self, server: Server) -> std::io::Result<XdsThread> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("xds-client-blocking")
            .build()?;
        let (stop, mut stopped) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("xds-client".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let draining = {
                        let server = server.clone();
                        async move {
                            while !server.is_draining() {
                                tokio::time::sleep(DRAIN_POLL).await;
                            }
                        }
                    };
                    tokio::select! {
                        () = self.run(server) => {}
                        _ = stopped.wait_for(|s| *s) => {}
                        () = draining => {}
                    }
                });
            })?;
        Ok(XdsThread {
            stop,
            thread: Some(thread),
        })
    }
}

// === impl XdsThread ===

impl XdsThread {
    /// Stops the client and waits for its thread to end (a config being applied is
    /// applied first).
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Whether the thread has ended (stopped, or the server drained).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl Drop for XdsThread {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
