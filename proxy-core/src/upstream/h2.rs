//! HTTP/2 (h2c prior knowledge) upstream: one multiplexed connection per endpoint and
//! worker, opened on first use and re-established when it closes.
//!
//! A worker's requests use the connection it opened, whose task runs on that worker's
//! runtime: its socket I/O and the requests' wake-ups stay on one thread. The
//! connection's stream counts its bytes in the endpoint's stats (`rx_bytes`,
//! `tx_bytes`) and holds the endpoint's open-connection slot until it closes.

use std::{sync::Arc, time::Duration};

use arc_swap::ArcSwapOption;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::Connector;
use crate::{Body, ProxyError};

/// The HTTP/2 connections of one endpoint, one per worker.
#[derive(Debug)]
pub(crate) struct H2Client {
    workers: Box<[H2Conn]>,
}

/// One worker's HTTP/2 connection to the endpoint.
#[derive(Debug, Default)]
struct H2Conn {
    conn: ArcSwapOption<SendRequest<Body>>,
    connecting: tokio::sync::Mutex<()>,
}

impl H2Client {
    /// A client for `workers` workers (at least one).
    pub(crate) fn new(workers: usize) -> Self {
        Self {
            workers: (0..workers.max(1)).map(|_| H2Conn::default()).collect(),
        }
    }

    /// A sender on the calling worker's live connection, connecting when it has none.
    pub(crate) async fn sender(
        &self,
        connector: &Connector,
        open: &Arc<super::pool::OpenCount>,
    ) -> Result<SendRequest<Body>, ProxyError> {
        self.workers[crate::worker::slot(self.workers.len())]
            .sender(connector, open)
            .await
    }

    /// Live connections now.
    #[cfg(test)]
    pub(crate) fn live_connections(&self) -> usize {
        self.workers.iter().filter(|w| w.live().is_some()).count()
    }
}

impl H2Conn {
    async fn sender(
        &self,
        connector: &Connector,
        open: &Arc<super::pool::OpenCount>,
    ) -> Result<SendRequest<Body>, ProxyError> {
        if let Some(s) = self.live() {
            return Ok(s);
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(s) = self.live() {
            return Ok(s);
        }
        let addr = connector.address();
        let guard = open
            .try_open(u32::MAX)
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
        self.conn.store(Some(Arc::new(send.clone())));
        Ok(send)
    }

    fn live(&self) -> Option<SendRequest<Body>> {
        let guard = self.conn.load();
        let s = guard.as_ref()?;
        (!s.is_closed()).then(|| (**s).clone())
    }
}
