//! One proxied stream: connect to the upstream, then copy both ways with
//! half-close, an idle timeout and byte counts.

use std::{
    io,
    net::SocketAddr,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use proxy_core::{cluster::Outcome, ConnInfo, Stream};
use quinn::{RecvStream, SendStream, VarInt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::{codes, listener::Shared, stats::Active, StreamError};

/// Bytes copied by one stream, each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Copied {
    pub(super) up: u64,
    pub(super) down: u64,
}

/// Proxies one bidirectional stream to an upstream of the cluster; resets the
/// stream with the matching [`codes`] when it ends badly.
pub(super) async fn stream(
    shared: &Shared,
    mut send: SendStream,
    mut recv: RecvStream,
    peer: SocketAddr,
) {
    let stats = &shared.stats;
    stats.streams.fetch_add(1, Relaxed);
    let _active = Active::new(&stats.streams_active);
    let result = match connect(shared, peer).await {
        Ok(upstream) => copy(shared, &mut send, &mut recv, upstream).await,
        Err(e) => Err(e),
    };
    let code = match &result {
        Ok(copied) => {
            tracing::debug!(up = copied.up, down = copied.down, "stream proxied");
            // Until the client acknowledged the end (a drain closes the connection
            // once the streams are done, which would drop data still unsent).
            let _ = tokio::time::timeout(shared.idle_timeout, send.stopped()).await;
            return;
        }
        Err(e @ (StreamError::NoEndpoints { .. } | StreamError::Connect(_))) => {
            tracing::debug!(error = %e, "stream upstream connect failed");
            stats.connect_failures.fetch_add(1, Relaxed);
            codes::CONNECT_FAILED
        }
        Err(StreamError::IdleTimeout) => {
            stats.idle_timeouts.fetch_add(1, Relaxed);
            codes::IDLE_TIMEOUT
        }
        Err(e @ StreamError::Upstream(_)) => {
            tracing::debug!(error = %e, "stream upstream failed");
            stats.upstream_errors.fetch_add(1, Relaxed);
            codes::UPSTREAM_ERROR
        }
        Err(e) => {
            tracing::debug!(error = %e, "stream client failed");
            stats.client_errors.fetch_add(1, Relaxed);
            codes::CANCELLED
        }
    };
    // Either may be closed already (finished, reset by the peer): nothing to do.
    let _ = send.reset(VarInt::from_u32(code));
    let _ = recv.stop(VarInt::from_u32(code));
}

async fn connect(shared: &Shared, peer: SocketAddr) -> Result<Stream, StreamError> {
    // The cluster's balancer picks by a request head (hash policies read its
    // extensions): an empty one carrying the client's address.
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.extensions.insert(ConnInfo::new(Some(peer), true));
    let endpoint = shared
        .cluster
        .pick(&parts)
        .ok_or_else(|| StreamError::NoEndpoints {
            cluster: shared.cluster.name.to_string(),
        })?;
    let started = Instant::now();
    endpoint.connect().await.map_err(|e| {
        // Outlier detection and health checks hear of connect failures too.
        for x in shared.cluster.extensions.iter() {
            x.on_outcome(&endpoint, &Outcome::ConnectFailure, started.elapsed());
        }
        StreamError::Connect(e)
    })
}

/// Copies both ways until both sides finished: the client's FIN shuts the
/// upstream's write side, the upstream's EOF finishes the QUIC stream.
async fn copy(
    shared: &Shared,
    send: &mut SendStream,
    recv: &mut RecvStream,
    upstream: Stream,
) -> Result<Copied, StreamError> {
    let (mut up_read, mut up_write) = tokio::io::split(upstream);
    let start = Instant::now();
    // Milliseconds since `start` of the last byte moved either way.
    let last = AtomicU64::new(0);
    let touch = || last.store(millis(start.elapsed()), Relaxed);
    let stats = &shared.stats;
    let size = shared.buffer_bytes;

    let up = async {
        let mut buf = vec![0; size];
        let mut total = 0u64;
        loop {
            match recv.read(&mut buf).await {
                Ok(Some(n)) => {
                    let chunk = buf.get(..n).unwrap_or_default();
                    up_write
                        .write_all(chunk)
                        .await
                        .map_err(StreamError::Upstream)?;
                    touch();
                    total += n as u64;
                    stats.bytes_up.fetch_add(n as u64, Relaxed);
                }
                Ok(None) => {
                    up_write.shutdown().await.map_err(StreamError::Upstream)?;
                    return Ok(total);
                }
                Err(e) => return Err(StreamError::Client(e.into())),
            }
        }
    };
    let down = async {
        let mut buf = vec![0; size];
        let mut total = 0u64;
        loop {
            let n = up_read
                .read(&mut buf)
                .await
                .map_err(StreamError::Upstream)?;
            if n == 0 {
                send.finish()
                    .map_err(|e| StreamError::Client(io::Error::other(e)))?;
                return Ok(total);
            }
            let chunk = buf.get(..n).unwrap_or_default();
            send.write_all(chunk)
                .await
                .map_err(|e| StreamError::Client(e.into()))?;
            touch();
            total += n as u64;
            stats.bytes_down.fetch_add(n as u64, Relaxed);
        }
    };
    let idle = shared.idle_timeout;
    let watch = async {
        loop {
            let quiet_since = Duration::from_millis(last.load(Relaxed));
            let deadline = start + quiet_since + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    tokio::select! {
        r = async { tokio::try_join!(up, down) } => r.map(|(up, down)| Copied { up, down }),
        () = watch => Err(StreamError::IdleTimeout),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
