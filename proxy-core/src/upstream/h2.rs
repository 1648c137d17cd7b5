//! HTTP/2 (h2c prior knowledge) upstream: one multiplexed connection per endpoint and
//! worker, opened on first use and re-established when it closes.
//!
//! A worker's requests use the connection it opened, whose task runs on that worker's
//! runtime: its socket I/O and the requests' wake-ups stay on one thread. The
//! connection's stream counts its bytes in the endpoint's stats (`rx_bytes`,
//! `tx_bytes`) and holds the endpoint's open-connection slot until it closes.
//!
//! An upstream that says it is going away (GOAWAY) finishes the streams it took and
//! refuses new ones: the connection is retired ([`H2Sender::retire`]) at the first
//! request it turns away, so the next opens a new one rather than waiting for it to
//! close.
//!
//! Under the cluster's `circuit_breakers.max_connections` ([`Cap`]), a worker without
//! a connection that finds the cap reached sends on another worker's connection to
//! the endpoint (one connection carries many requests); when there is none, it waits,
//! as a pending request, for a slot to free or for another worker's connection to
//! come up.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use arc_swap::ArcSwapOption;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::{
    limit::{ConnectionLimit, ConnectionSlot},
    Connector,
};
use crate::{cluster::BreakerLimit, Body, ProxyError};

/// The HTTP/2 connections of one endpoint, one per worker.
#[derive(Debug)]
pub(crate) struct H2Client {
    workers: Box<[H2Conn]>,
    /// Woken when a worker's connection comes up, for the requests waiting at the cap.
    connected: tokio::sync::Notify,
}

/// The cluster-wide connection cap a new connection is taken under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cap<'a> {
    pub(crate) limit: &'a ConnectionLimit,
    /// How long a request waits at the cap (the connect timeout).
    pub(crate) wait: Duration,
    /// The cluster's name, for the overflow errors.
    pub(crate) cluster: &'a Arc<str>,
}

impl Cap<'_> {
    fn overflow(&self, limit: BreakerLimit) -> ProxyError {
        ProxyError::ClusterOverflow {
            cluster: self.cluster.clone(),
            limit: limit.name(),
        }
    }
}

/// A way to send once the cap was reached.
enum AtCap {
    Shared(Arc<H2Sender>),
    Slot(ConnectionSlot),
}

/// One worker's HTTP/2 connection to the endpoint.
#[derive(Debug, Default)]
struct H2Conn {
    conn: ArcSwapOption<H2Sender>,
    connecting: tokio::sync::Mutex<()>,
}

/// An open HTTP/2 connection: its request sender, and whether it was retired.
#[derive(Debug)]
pub(crate) struct H2Sender {
    send: SendRequest<Body>,
    retired: AtomicBool,
    /// An answer came on the connection.
    answered: AtomicBool,
}

impl H2Sender {
    /// A sender of requests on the connection.
    pub(crate) fn sender(&self) -> SendRequest<Body> {
        self.send.clone()
    }

    /// Takes the connection out of use for new requests: the upstream is going away.
    /// The streams it took go on to their end.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
    }

    /// Notes that an answer came on the connection.
    pub(crate) fn answered(&self) {
        if !self.answered.load(Ordering::Relaxed) {
            self.answered.store(true, Ordering::Relaxed);
        }
    }

    /// Whether an answer came on the connection.
    pub(crate) fn has_answered(&self) -> bool {
        self.answered.load(Ordering::Relaxed)
    }

    fn usable(&self) -> bool {
        !self.retired.load(Ordering::Relaxed) && !self.send.is_closed()
    }
}

impl H2Client {
    /// A client for `workers` workers (at least one).
    pub(crate) fn new(workers: usize) -> Self {
        Self {
            workers: (0..workers.max(1)).map(|_| H2Conn::default()).collect(),
            connected: tokio::sync::Notify::new(),
        }
    }

    /// A sender on the calling worker's live connection, connecting when it has none
    /// (under `cap`, when the cluster has one).
    pub(crate) async fn sender(
        &self,
        connector: &Connector,
        open: &Arc<super::pool::OpenCount>,
        cap: Option<Cap<'_>>,
    ) -> Result<Arc<H2Sender>, ProxyError> {
        let mine = &self.workers[crate::worker::slot(self.workers.len())];
        if let Some(s) = mine.live() {
            return Ok(s);
        }
        // At the cap, another worker's connection serves at once, rather than after
        // this worker's requests queued behind one waiting for a slot.
        if cap.is_some_and(|c| c.limit.open() >= u64::from(c.limit.max_connections())) {
            if let Some(s) = self.workers.iter().find_map(H2Conn::live) {
                return Ok(s);
            }
        }
        let _one_at_a_time = mine.connecting.lock().await;
        if let Some(s) = mine.live() {
            return Ok(s);
        }
        let slot = match cap {
            None => None,
            Some(cap) => match cap.limit.try_slot() {
                Some(slot) => Some(slot),
                None => match self.wait_at_cap(cap).await? {
                    AtCap::Shared(s) => return Ok(s),
                    AtCap::Slot(slot) => Some(slot),
                },
            },
        };
        let send = mine.connect(connector, open, slot).await?;
        self.connected.notify_waiters();
        Ok(send)
    }

    /// At the cap: another worker's live connection, else a wait (as a pending
    /// request, within `cap.wait`) for a slot or for another worker's connection.
    async fn wait_at_cap(&self, cap: Cap<'_>) -> Result<AtCap, ProxyError> {
        let _pending = cap
            .limit
            .start_waiting()
            .map_err(|_| cap.overflow(BreakerLimit::MaxPendingRequests))?;
        let wait = async {
            loop {
                let connected = self.connected.notified();
                tokio::pin!(connected);
                // Enabled before looking, so a connection coming up in between is seen.
                connected.as_mut().enable();
                if let Some(s) = self.workers.iter().find_map(H2Conn::live) {
                    return Some(AtCap::Shared(s));
                }
                tokio::select! {
                    () = &mut connected => {}
                    slot = cap.limit.freed_slot() => return slot.map(AtCap::Slot),
                }
            }
        };
        match tokio::time::timeout(cap.wait, wait).await {
            Ok(Some(at_cap)) => Ok(at_cap),
            Ok(None) | Err(_) => Err(cap.overflow(BreakerLimit::MaxConnections)),
        }
    }

    /// Live connections now.
    #[cfg(test)]
    pub(crate) fn live_connections(&self) -> usize {
        self.workers.iter().filter(|w| w.live().is_some()).count()
    }
}

impl H2Conn {
    /// Opens the worker's connection (its `connecting` lock held), holding `slot`.
    async fn connect(
        &self,
        connector: &Connector,
        open: &Arc<super::pool::OpenCount>,
        slot: Option<ConnectionSlot>,
    ) -> Result<Arc<H2Sender>, ProxyError> {
        let addr = connector.address();
        let guard = open
            .try_open(u32::MAX, slot)
            .ok_or(ProxyError::Overflow { addr })?;
        // Every byte of the connection (preface, settings, headers, bodies) counts in
        // the endpoint's stats; the guard goes with the stream when the connection ends.
        let stream = crate::net::Counted {
            inner: connector.connect().await?,
            stats: guard,
        };
        let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .handshake::<_, Body>(TokioIo::new(stream))
            .await
            .map_err(|e| ProxyError::Upstream {
                request_sent: false,
                source: e.into(),
            })?;
        // On the calling worker's runtime: the connection serves that worker only.
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, error = %e, "upstream h2 connection ended");
            }
        });
        let sender = Arc::new(H2Sender {
            send,
            retired: AtomicBool::new(false),
            answered: AtomicBool::new(false),
        });
        self.conn.store(Some(sender.clone()));
        Ok(sender)
    }

    fn live(&self) -> Option<Arc<H2Sender>> {
        let guard = self.conn.load();
        guard.as_ref().filter(|s| s.usable()).map(Arc::clone)
    }
}
