//! `rpc-load serve`: a Bolt or Dubbo server answering every call with the same fixed
//! response (its id set to the call's), heartbeats with their reply.

use std::io;

use bytes::BytesMut;
use proxy_codec::FrameKind;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::wire::Wire;

/// Accepts connections on `listener` and serves each on a task of its own.
pub(crate) async fn serve<W: Wire>(wire: W, listener: TcpListener) -> io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = connection(wire, stream).await;
        });
    }
}

/// Answers every complete frame of each read, then writes the answers at once.
async fn connection<W: Wire>(wire: W, mut s: TcpStream) -> io::Result<()> {
    let mut answer = wire.answer();
    let mut rbuf = BytesMut::with_capacity(64 << 10);
    let mut wbuf = BytesMut::with_capacity(64 << 10);
    loop {
        if rbuf.capacity() - rbuf.len() < 16 << 10 {
            rbuf.reserve(64 << 10);
        }
        if s.read_buf(&mut rbuf).await? == 0 {
            return Ok(());
        }
        while let Some(len) = wire.frame_length(&rbuf).map_err(invalid)? {
            let len = usize::try_from(len).map_err(invalid)?;
            if rbuf.len() < len {
                break;
            }
            let frame = wire.decode(rbuf.split_to(len).freeze()).map_err(invalid)?;
            match wire.kind(&frame) {
                FrameKind::Request => {
                    wire.set_request_id(&mut answer, wire.request_id(&frame));
                    wire.encode(&answer, &mut wbuf).map_err(invalid)?;
                }
                FrameKind::Heartbeat => {
                    wire.encode(&wire.heartbeat_reply(&frame), &mut wbuf)
                        .map_err(invalid)?;
                }
                FrameKind::OneWay | FrameKind::Response | FrameKind::HeartbeatReply => {}
            }
        }
        if !wbuf.is_empty() {
            s.write_all(&wbuf).await?;
            wbuf.clear();
        }
    }
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}
