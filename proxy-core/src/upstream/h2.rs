//! HTTP/2 (h2c prior knowledge) upstream: one multiplexed connection per endpoint,
//! re-established when it closes.

use std::{sync::Arc, time::Duration};

use arc_swap::ArcSwapOption;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::Connector;
use crate::{Body, ProxyError};

/// The shared HTTP/2 connection of one endpoint.
#[derive(Debug, Default)]
pub(crate) struct H2Client {
    conn: ArcSwapOption<SendRequest<Body>>,
    connecting: tokio::sync::Mutex<()>,
}

impl H2Client {
    /// A sender on a live connection, connecting when there is none.
    pub(crate) async fn sender(
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
        let stream = connector.connect().await?;
        let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .handshake::<_, Body>(TokioIo::new(stream))
            .await
            .map_err(|e| ProxyError::Upstream {
                request_sent: false,
                source: e.into(),
            })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, error = %e, "upstream h2 connection ended");
            }
            drop(guard);
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
