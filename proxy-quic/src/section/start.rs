//! Starting the listeners of a prepared `quic` section on a running server.

use std::{fmt::Write as _, net::SocketAddr, sync::Arc, time::Duration};

use proxy_core::{MetricsHook, Server, ServerError};
use tokio::sync::watch;

use super::H3Config;
use crate::{
    h3::{H3Error, H3Listener, H3Stats},
    CidError, NonceSpace, QuicLbServer,
};

/// How often a started listener checks whether the server drains.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// A `quic` section checked against the config, its certificates loaded
/// ([`QuicSection::prepare`](super::QuicSection::prepare)); nothing bound yet.
#[derive(Debug)]
pub struct Prepared {
    pub(super) listeners: Vec<PreparedH3>,
    /// UDP sockets handed over by an old process ([`Prepared::inherit`]).
    pub(super) inherited: Vec<super::InheritedUdp>,
}

#[derive(Debug, Clone)]
pub(super) struct PreparedH3 {
    pub(super) config: H3Config,
    pub(super) tls: Arc<rustls::ServerConfig>,
    pub(super) quic_lb: Option<QuicLbServer>,
}

/// Why a listener of the `quic` section did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuicStartError {
    /// The TCP listener it serves is not in the server's config.
    #[error("quic listener {name}: the listener it serves")]
    Serves {
        /// The QUIC listener's name.
        name: String,
        /// The cause.
        #[source]
        source: ServerError,
    },
    /// Its QUIC-LB connection ID generator could not be made.
    #[error("quic listener {name}: connection ID generator")]
    Cid {
        /// The QUIC listener's name.
        name: String,
        /// The cause.
        #[source]
        source: CidError,
    },
    /// Its UDP socket could not be bound, or the endpoint not started.
    #[error("quic listener {name}: bind")]
    Bind {
        /// The QUIC listener's name.
        name: String,
        /// The cause.
        #[source]
        source: H3Error,
    },
}

impl Prepared {
    /// The number of listeners.
    pub fn len(&self) -> usize {
        self.listeners.len()
    }

    /// Whether there is no listener.
    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
    }

    /// The same listeners with no inherited socket: what starts them again.
    #[cfg_attr(not(feature = "upgrade"), allow(dead_code))]
    pub(super) fn listeners_only(&self) -> Self {
        Self {
            listeners: self.listeners.clone(),
            inherited: Vec::new(),
        }
    }

    /// Binds every listener and serves it on the calling task's tokio runtime (call
    /// it from within the server's, e.g. in the future given to
    /// `Server::run_until`): each request runs the served TCP listener's stack as
    /// of the current config (`Server::http_service`). The listeners drain (GOAWAY,
    /// requests in flight finish up to `drain_timeout`) when the server drains or
    /// the returned [`Running`] drops.
    ///
    /// All or nothing: when one listener fails, those started stop again.
    ///
    /// # Errors
    /// [`QuicStartError`] naming the listener; also outside a tokio runtime
    /// ([`H3Error::NoRuntime`]).
    pub fn start(mut self, server: &Server) -> Result<Running, QuicStartError> {
        let (stop, stopped) = watch::channel(false);
        let mut running = Running {
            stop,
            listeners: Vec::new(),
            handoffs: Vec::new(),
            tasks: Vec::new(),
        };
        for h3 in std::mem::take(&mut self.listeners) {
            let name = h3.config.listener_name();
            let service = server.http_service(&h3.config.serves).map_err(|source| {
                QuicStartError::Serves {
                    name: name.clone(),
                    source,
                }
            })?;
            let c = &h3.config;
            let mut builder =
                H3Listener::builder(name.as_str(), rustls::ServerConfig::clone(&h3.tls))
                    .max_concurrent_streams(c.max_concurrent_streams)
                    .idle_timeout(c.idle_timeout)
                    .max_request_head_bytes(c.max_request_head_bytes.get())
                    .drain_timeout(c.drain_timeout);
            if let Some(lb) = &h3.quic_lb {
                let generator = NonceSpace::new(0, 1)
                    .and_then(|space| lb.generator(space))
                    .map_err(|source| QuicStartError::Cid {
                        name: name.clone(),
                        source,
                    })?;
                builder = builder.cid_generator(generator);
            }
            let listener = match self.take_inherited(&name, c.address) {
                Some(inherited) => {
                    if let Some((forward, old)) = inherited.forward {
                        builder = builder.take_over(forward, old);
                    }
                    builder.bind_socket(std::net::UdpSocket::from(inherited.socket))
                }
                None => builder.bind(c.address),
            }
            .map_err(|source| QuicStartError::Bind {
                name: name.clone(),
                source,
            })?;
            running
                .handoffs
                .push((name.as_str().into(), listener.handoff()));
            running
                .listeners
                .push((name.into(), listener.local_addr(), listener.stats()));
            let shutdown = until_stopped(stopped.clone(), server.clone());
            running
                .tasks
                .push(tokio::spawn(listener.serve(service, shutdown)));
        }
        Ok(running)
    }
}

/// Until `stop` says so (or its sender drops) or `server` drains.
async fn until_stopped(mut stop: watch::Receiver<bool>, server: Server) {
    let draining = async {
        while !server.is_draining() {
            tokio::time::sleep(DRAIN_POLL).await;
        }
    };
    tokio::select! {
        _ = stop.wait_for(|s| *s) => {}
        () = draining => {}
    }
}

/// The started listeners of a `quic` section; they drain when this drops (or the
/// server drains).
#[derive(Debug)]
pub struct Running {
    stop: watch::Sender<bool>,
    listeners: Vec<(Arc<str>, SocketAddr, Arc<H3Stats>)>,
    pub(super) handoffs: Vec<(Arc<str>, crate::handoff::Handoff)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Each listener's name and bound UDP address (the port chosen for port 0).
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.listeners
            .iter()
            .map(|(name, addr, _)| (name.to_string(), *addr))
            .collect()
    }

    /// Appends the listeners' counters to `out` in the Prometheus text format:
    /// `proxy_quic_h3_*{listener="NAME"}`.
    pub fn render_metrics(&self, out: &mut String) {
        render(&self.listeners, out);
    }

    /// Drains the listeners (GOAWAY, requests in flight finish up to their
    /// `drain_timeout`) and returns once they closed.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        self.closed().await;
    }

    /// Returns once every listener has closed (the server drained, or each was
    /// handed off and drained), stopping none. Cancel-safe.
    pub(super) async fn closed(&mut self) {
        while let Some(task) = self.tasks.last_mut() {
            let _ = task.await;
            // Right after it completed: a completed handle is never polled again.
            self.tasks.pop();
        }
    }

    /// A hook for the admin endpoint's metrics (`Server::with_metrics`), rendering
    /// the counters as [`render_metrics`](Self::render_metrics) does; it holds the
    /// counters only, not the listeners.
    pub fn metrics_hook(&self) -> MetricsHook {
        let listeners = self.listeners.clone();
        Arc::new(move |out: &mut String| render(&listeners, out))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn render(listeners: &[(Arc<str>, SocketAddr, Arc<H3Stats>)], out: &mut String) {
    type Pick = fn(&crate::h3::H3StatsSnapshot) -> u64;
    const SERIES: [(&str, &str, &str, Pick); 9] = [
        (
            "handshakes_total",
            "counter",
            "QUIC handshakes completed",
            |s| s.handshakes,
        ),
        (
            "handshake_failures_total",
            "counter",
            "QUIC handshakes failed",
            |s| s.handshake_failures,
        ),
        ("connections_active", "gauge", "connections open", |s| {
            s.connections_active
        }),
        (
            "requests_total",
            "counter",
            "requests handed to the stack",
            |s| s.requests,
        ),
        ("requests_active", "gauge", "requests being handled", |s| {
            s.requests_active
        }),
        (
            "malformed_total",
            "counter",
            "requests refused as malformed",
            |s| s.malformed,
        ),
        (
            "stack_errors_total",
            "counter",
            "requests the stack failed",
            |s| s.stack_errors,
        ),
        (
            "responses_reset_total",
            "counter",
            "responses reset midway",
            |s| s.responses_reset,
        ),
        ("goaways_total", "counter", "connections sent GOAWAY", |s| {
            s.goaways
        }),
    ];
    if listeners.is_empty() {
        return;
    }
    let snapshots: Vec<_> = listeners
        .iter()
        .map(|(n, _, s)| (n, s.snapshot()))
        .collect();
    for (metric, kind, help, pick) in SERIES {
        let _ = writeln!(out, "# HELP proxy_quic_h3_{metric} HTTP/3: {help}.");
        let _ = writeln!(out, "# TYPE proxy_quic_h3_{metric} {kind}");
        for (name, snap) in &snapshots {
            let _ = writeln!(
                out,
                "proxy_quic_h3_{metric}{{listener=\"{name}\"}} {}",
                pick(snap)
            );
        }
    }
}
