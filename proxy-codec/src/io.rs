//! Whole frames of any [`Protocol`] over a byte stream: what a client, a tool or a
//! test peer needs to talk to an [`crate::RpcServer`] without the proxy machinery.
//!
//! ```
//! use bytes::BytesMut;
//! use proxy_codec::{io, Dubbo, Protocol};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let (mut a, mut b) = tokio::io::duplex(4096);
//! let ping = Dubbo.heartbeat().expect("dubbo has heartbeats");
//! io::write_frame(&Dubbo, &mut a, &ping).await?;
//! let got = io::read_frame(&Dubbo, &mut b, &mut BytesMut::new(), 1 << 20).await?;
//! assert_eq!(got, Some(ping));
//! # Ok(())
//! # }
//! ```

use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{mux::next_frame, protocol::Protocol};

/// Reads the next whole frame from `rd`; `Ok(None)` when the stream ends between
/// frames. `buf` keeps bytes read past the frame for the next call. A frame whose
/// fixed header declares more than `max_frame` bytes is refused before it is
/// buffered.
///
/// # Errors
/// The stream's errors; [`io::ErrorKind::InvalidData`] (with the
/// [`crate::DecodeError`] as its source) for bytes that are not a frame or declare one
/// too long; [`io::ErrorKind::UnexpectedEof`] when the stream ends inside a frame.
pub async fn read_frame<P, R>(
    protocol: &P,
    rd: &mut R,
    buf: &mut BytesMut,
    max_frame: usize,
) -> io::Result<Option<P::Frame>>
where
    P: Protocol + ?Sized,
    R: AsyncRead + Unpin + ?Sized,
{
    loop {
        let next = next_frame(protocol, buf, max_frame).map_err(invalid)?;
        if let Some(frame) = next {
            return protocol.decode(frame).map(Some).map_err(invalid);
        }
        if rd.read_buf(buf).await? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
    }
}

/// Encodes `frame` and writes it to `wr`.
///
/// # Errors
/// The stream's errors; [`io::ErrorKind::InvalidInput`] (with the
/// [`crate::EncodeError`] as its source) for a frame the wire format cannot carry.
pub async fn write_frame<P, W>(protocol: &P, wr: &mut W, frame: &P::Frame) -> io::Result<()>
where
    P: Protocol + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut out = BytesMut::new();
    protocol
        .encode(frame, &mut out)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    wr.write_all(&out).await
}

fn invalid(e: crate::DecodeError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}
