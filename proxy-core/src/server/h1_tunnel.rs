//! An HTTP/1.1 connection upgraded (`101 Switching Protocols`): bytes copied both
//! ways between the client and the upstream until both sides are done.

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::net::{ReadHalf, Stream, WriteHalf};

/// Copies between the client's halves and `upstream`, first sending the bytes each
/// side had read ahead of the other's.
pub(super) async fn tunnel(
    mut down_r: ReadHalf,
    mut down_w: WriteHalf,
    down_buf: BytesMut,
    upstream: Stream,
    up_buf: BytesMut,
) {
    let (mut up_r, mut up_w) = upstream.into_split();
    let to_up = async {
        if !down_buf.is_empty() {
            up_w.write_all(&down_buf).await?;
        }
        tokio::io::copy(&mut down_r, &mut up_w).await?;
        up_w.shutdown().await
    };
    let to_down = async {
        if !up_buf.is_empty() {
            down_w.write_all(&up_buf).await?;
        }
        tokio::io::copy(&mut up_r, &mut down_w).await?;
        down_w.shutdown().await
    };
    let _ = tokio::join!(to_up, to_down);
}
