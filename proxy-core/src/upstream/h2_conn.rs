//! The task of one HTTP/2 upstream connection: it drives the connection's frames and
//! checks, by a PING every [`KEEP_ALIVE_INTERVAL`], that the upstream still answers;
//! one that leaves a PING unanswered for [`KEEP_ALIVE_TIMEOUT`] is taken for gone and
//! the connection closed, failing its streams, rather than holding them until the
//! kernel gives up on the socket.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use h2::{client::Connection, Ping, PingPong};
use tokio::io::{AsyncRead, AsyncWrite};

/// How often the upstream is asked for a PING's answer.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// How long a PING's answer is waited for.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Drives `conn` until it ends or stops answering PINGs, then sets `closed`.
pub(super) async fn drive<T>(
    mut conn: Connection<T, Bytes>,
    closed: Arc<AtomicBool>,
    addr: SocketAddr,
) where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let pings = conn.ping_pong();
    tokio::select! {
        ended = &mut conn => {
            if let Err(e) = ended {
                tracing::debug!(%addr, error = %e, "upstream h2 connection ended");
            }
        }
        () = keep_alive(pings) => {
            tracing::debug!(%addr, "upstream h2 connection answered no PING: closed");
        }
    }
    closed.store(true, Ordering::Relaxed);
}

/// Ends when a PING goes unanswered (or cannot be sent); pending forever without a
/// PING handle.
async fn keep_alive(pings: Option<PingPong>) {
    let Some(mut pings) = pings else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(KEEP_ALIVE_INTERVAL).await;
        match tokio::time::timeout(KEEP_ALIVE_TIMEOUT, pings.ping(Ping::opaque())).await {
            Ok(Ok(_pong)) => {}
            // The connection itself ended: its future says so.
            Ok(Err(_)) => return std::future::pending().await,
            Err(_) => return,
        }
    }
}
