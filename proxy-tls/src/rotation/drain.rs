//! Retiring connections made with replaced material once their drain time passed.

use std::time::Duration;

use proxy_core::{connection::Retire, BoxConn, BoxError, Connection};
use tower::ServiceExt;

use super::Generation;

/// Serves `conn` with `inner`; when `generation` is replaced by newer material,
/// waits `drain` and then asks core to retire the connection at its next request
/// boundary (HTTP/1.1 `Connection: close` after the request in flight, HTTP/2
/// GOAWAY letting open streams finish).
pub(crate) async fn serve_with_drain<T>(
    inner: BoxConn,
    mut conn: Connection,
    generation: &Generation<T>,
    drain: Duration,
) -> Result<(), BoxError> {
    let (handle, retire) = Retire::new();
    conn.extensions.insert(retire);
    let serve = inner.oneshot(conn);
    tokio::pin!(serve);
    tokio::select! {
        r = &mut serve => return r,
        () = async {
            generation.superseded().await;
            tokio::time::sleep(drain).await;
        } => {
            tracing::debug!("tls material rotated: retiring a connection after its drain time");
            handle.retire();
        }
    }
    serve.await
}
