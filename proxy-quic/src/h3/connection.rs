//! One QUIC connection serving HTTP/3: the handshake, the h3 connection's accept
//! loop (its control streams too), one task per request, and the graceful drain.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use proxy_core::BoxHttp;
use tokio::{sync::watch, task::JoinSet};
use tracing::Instrument;

use super::{request, H3Stats};

/// What every connection of a listener shares.
#[derive(Debug)]
pub(super) struct Shared {
    /// The listener's name (its spans' `listener` field).
    pub(super) name: Arc<str>,
    /// The request stack.
    pub(super) stack: BoxHttp,
    /// The limit on a request head (the h3 `SETTINGS_MAX_FIELD_SECTION_SIZE`).
    pub(super) max_head_bytes: u64,
    /// How long a draining connection waits for its requests.
    pub(super) drain_timeout: Duration,
    /// The listener's counters.
    pub(super) stats: Arc<H3Stats>,
}

/// Serves `incoming` until the client closes it, it fails or times out, or `drain`
/// turns true: then GOAWAY, in-flight requests finish (at most `drain_timeout`), and
/// the connection closes with H3_NO_ERROR.
pub(super) async fn serve(
    incoming: quinn::Incoming,
    shared: Arc<Shared>,
    mut drain: watch::Receiver<bool>,
) {
    let remote = incoming.remote_address();
    let span = tracing::info_span!("h3_connection", peer = %remote, listener = %shared.name);
    async move {
        let conn = tokio::select! {
            conn = incoming => match conn {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::debug!(error = %e, "QUIC handshake failed");
                    shared.stats.handshake_failed();
                    return;
                }
            },
            _ = drain.wait_for(|d| *d) => {
                shared.stats.handshake_failed();
                return;
            }
        };
        let _active = shared.stats.connection();
        let h3 = ::h3::server::builder()
            .max_field_section_size(shared.max_head_bytes)
            .build::<_, Bytes>(h3_quinn::Connection::new(conn.clone()))
            .await;
        let mut h3 = match h3 {
            Ok(h3) => h3,
            Err(e) => {
                tracing::debug!(error = %e, "HTTP/3 connection setup failed");
                return;
            }
        };
        let mut requests = JoinSet::new();
        let draining = loop {
            tokio::select! {
                accepted = h3.accept() => match accepted {
                    Ok(Some(resolver)) => {
                        // Read per request: the client's address after a migration.
                        let peer = conn.remote_address();
                        requests.spawn(request::serve(resolver, peer, shared.clone()).in_current_span());
                    }
                    Ok(None) => break false,
                    Err(e) => {
                        if !e.is_h3_no_error() {
                            tracing::debug!(error = %e, "HTTP/3 connection ended");
                        }
                        break false;
                    }
                },
                Some(_) = requests.join_next(), if !requests.is_empty() => {}
                _ = drain.wait_for(|d| *d) => break true,
            }
        };
        if draining {
            drain_connection(&mut h3, &conn, &mut requests, &shared).await;
        }
        // Requests still running after the client left (or past the drain deadline)
        // are dropped; dropping `h3` closes the connection with H3_NO_ERROR.
        requests.shutdown().await;
        drop(h3);
    }
    .instrument(span)
    .await;
}

type H3Conn = ::h3::server::Connection<h3_quinn::Connection, Bytes>;

/// GOAWAY, then the requests in flight finish, at most for `timeout`; streams the
/// client opened before it saw the GOAWAY and that it covers are still served.
async fn drain_connection(
    h3: &mut H3Conn,
    conn: &quinn::Connection,
    requests: &mut JoinSet<()>,
    shared: &Arc<Shared>,
) {
    tracing::debug!("draining: sending GOAWAY");
    let deadline = tokio::time::sleep(shared.drain_timeout);
    tokio::pin!(deadline);
    // GOAWAY names the stream after the last accepted one: everything before it is
    // (being) processed, everything from it on may be retried elsewhere.
    tokio::select! {
        r = h3.shutdown(1) => match r {
            Ok(()) => shared.stats.goaway(),
            Err(e) => {
                tracing::debug!(error = %e, "GOAWAY not sent");
                return;
            }
        },
        () = &mut deadline => return,
    }
    // Done once no request is in flight and the connection was quiet (nothing
    // sent) for a probe timeout: what the requests wrote is acknowledged, and a
    // request the client sent before it saw the GOAWAY has arrived. Closing at
    // once would discard answers in flight and refuse such a request.
    let mut sent = conn.stats().udp_tx.datagrams;
    loop {
        let quiet = (conn.rtt() * 4 + Duration::from_millis(30)).min(Duration::from_secs(1));
        tokio::select! {
            accepted = h3.accept() => match accepted {
                Ok(Some(resolver)) => {
                    // Only streams the GOAWAY covers get here; h3 refuses later ones.
                    let peer = conn.remote_address();
                    requests.spawn(request::serve(resolver, peer, shared.clone()).in_current_span());
                }
                Ok(None) | Err(_) => break,
            },
            Some(_) = requests.join_next(), if !requests.is_empty() => {}
            () = tokio::time::sleep(quiet), if requests.is_empty() => {
                let now = conn.stats().udp_tx.datagrams;
                if now == sent {
                    break;
                }
                sent = now;
            }
            () = &mut deadline => {
                tracing::debug!(in_flight = requests.len(), "drain deadline: closing");
                return;
            }
        }
    }
}
