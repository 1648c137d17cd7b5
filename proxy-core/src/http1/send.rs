//! Writing a [`Body`] to an HTTP/1.1 connection with the chosen framing, coalescing
//! small frames with the head into as few writes as possible.

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::FutureExt;
use http::HeaderMap;
use http_body_util::BodyExt;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::head::Framing;
use crate::{Body, BoxError};

/// Frames larger than this are written directly instead of being copied.
const COPY_LIMIT: usize = 16 * 1024;
/// The write buffer is flushed once it holds this much.
const FLUSH_AT: usize = 64 * 1024;

/// Why a body could not be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendBodyError {
    #[error("reading the body failed")]
    Source(#[source] BoxError),
    /// Reading the body failed before any of the response (its head included) was
    /// written: the peer can still be answered with an error instead.
    #[error("reading the body failed before anything was written")]
    SourceBeforeAnyWrite(#[source] BoxError),
    #[error("writing to the peer failed")]
    Sink(#[source] std::io::Error),
    #[error("body length does not match its content-length")]
    LengthMismatch,
}

/// Writes `wbuf` (which may already hold a head) and then `body`, framed as `framing`.
/// Returns the number of body bytes written. `wbuf` is empty afterwards.
pub(crate) async fn send_body<W: AsyncWrite + Unpin>(
    io: &mut W,
    wbuf: &mut BytesMut,
    body: &mut Body,
    framing: Framing,
    stall: Duration,
) -> Result<u64, SendBodyError> {
    let mut sent: u64 = 0;
    let mut trailers_sent = false;
    // Whether anything (the head in `wbuf` first) has been written to `io`: until
    // then a failing source leaves the peer nothing half-sent, and it can still be
    // answered in full (a 502).
    let mut wrote = false;
    if framing == Framing::Empty {
        flush(io, wbuf, stall).await?;
        return Ok(0);
    }
    loop {
        let frame = match body.frame().now_or_never() {
            Some(f) => f,
            None => {
                flush(io, wbuf, stall).await?;
                wrote = true;
                body.frame().await
            }
        };
        match frame {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    if data.is_empty() {
                        continue;
                    }
                    sent += data.len() as u64;
                    if let Framing::Length(n) = framing {
                        if sent > n {
                            return Err(SendBodyError::LengthMismatch);
                        }
                    }
                    wrote |= put_data(io, wbuf, data, framing, stall).await?;
                }
                Err(frame) => {
                    if let (Ok(trailers), Framing::Chunked) = (frame.into_trailers(), framing) {
                        put_last_chunk(wbuf, Some(&trailers));
                        trailers_sent = true;
                    }
                }
            },
            Some(Err(e)) if wrote => return Err(SendBodyError::Source(e)),
            Some(Err(e)) => {
                wbuf.clear();
                return Err(SendBodyError::SourceBeforeAnyWrite(e));
            }
            None => break,
        }
    }
    match framing {
        Framing::Chunked if !trailers_sent => put_last_chunk(wbuf, None),
        Framing::Length(n) if sent != n => return Err(SendBodyError::LengthMismatch),
        _ => {}
    }
    flush(io, wbuf, stall).await?;
    Ok(sent)
}

/// Puts `data` in `wbuf` (framed), or writes it out when it is large or `wbuf` is
/// full: true when bytes went to `io`.
async fn put_data<W: AsyncWrite + Unpin>(
    io: &mut W,
    wbuf: &mut BytesMut,
    data: Bytes,
    framing: Framing,
    stall: Duration,
) -> Result<bool, SendBodyError> {
    let mut wrote = false;
    if framing == Framing::Chunked {
        put_chunk_size(wbuf, data.len());
    }
    if data.len() <= COPY_LIMIT {
        wbuf.put_slice(&data);
    } else {
        flush(io, wbuf, stall).await?;
        write_all_within(io, &data, stall)
            .await
            .map_err(SendBodyError::Sink)?;
        wrote = true;
    }
    if framing == Framing::Chunked {
        wbuf.put_slice(b"\r\n");
    }
    if wbuf.len() >= FLUSH_AT {
        flush(io, wbuf, stall).await?;
        wrote = true;
    }
    Ok(wrote)
}

fn put_chunk_size(wbuf: &mut BytesMut, len: usize) {
    let _ = std::fmt::Write::write_fmt(&mut BytesMutWriter(wbuf), format_args!("{len:x}\r\n"));
}

fn put_last_chunk(wbuf: &mut BytesMut, trailers: Option<&HeaderMap>) {
    wbuf.put_slice(b"0\r\n");
    if let Some(trailers) = trailers {
        for (name, value) in trailers {
            if super::names::barred_from_trailers(name.as_str()) {
                continue;
            }
            wbuf.put_slice(name.as_str().as_bytes());
            wbuf.put_slice(b": ");
            wbuf.put_slice(value.as_bytes());
            wbuf.put_slice(b"\r\n");
        }
    }
    wbuf.put_slice(b"\r\n");
}

/// Writes out `wbuf`, failing when the peer accepts nothing for `stall`.
pub(crate) async fn flush<W: AsyncWrite + Unpin>(
    io: &mut W,
    wbuf: &mut BytesMut,
    stall: Duration,
) -> Result<(), SendBodyError> {
    if !wbuf.is_empty() {
        write_all_within(io, wbuf, stall)
            .await
            .map_err(SendBodyError::Sink)?;
        wbuf.clear();
    }
    Ok(())
}

/// Writes all of `buf`, failing when it is not written within `stall`. The first write
/// is tried without a timer; only a write that has to wait (a slow or stalled peer)
/// takes the boxed path with one, so the usual request neither arms a timer nor carries
/// one in its future.
pub(crate) async fn write_all_within<W: AsyncWrite + Unpin>(
    io: &mut W,
    buf: &[u8],
    stall: Duration,
) -> std::io::Result<()> {
    let done = match std::pin::pin!(io.write(buf)).now_or_never() {
        Some(Ok(0)) if !buf.is_empty() => return Err(std::io::ErrorKind::WriteZero.into()),
        Some(result) => result?,
        None => 0,
    };
    if done == buf.len() {
        return Ok(());
    }
    Box::pin(write_rest_within(io, &buf[done..], stall)).await
}

async fn write_rest_within<W: AsyncWrite + Unpin>(
    io: &mut W,
    buf: &[u8],
    stall: Duration,
) -> std::io::Result<()> {
    match tokio::time::timeout(stall, io.write_all(buf)).await {
        Ok(done) => done,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the peer accepted no bytes within the stream idle timeout",
        )),
    }
}

struct BytesMutWriter<'a>(&'a mut BytesMut);

impl std::fmt::Write for BytesMutWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes `send_body` writes, chunked, for a body of `hello` then `trailers`.
    async fn hello_chunked_with(trailers: HeaderMap) -> Vec<u8> {
        let stream = futures_util::stream::iter(vec![
            Ok::<_, BoxError>(http_body::Frame::data(Bytes::from_static(b"hello"))),
            Ok(http_body::Frame::trailers(trailers)),
        ]);
        let mut body = Body::new(http_body_util::StreamBody::new(stream));
        let mut out = Vec::new();
        send_body(
            &mut out,
            &mut BytesMut::new(),
            &mut body,
            Framing::Chunked,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        out
    }

    #[tokio::test]
    async fn chunked_body_with_trailers() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        assert_eq!(
            hello_chunked_with(trailers).await,
            b"5\r\nhello\r\n0\r\ngrpc-status: 0\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn framing_and_connection_fields_are_not_sent_as_trailers() {
        let mut trailers = HeaderMap::new();
        for name in [
            "content-length",
            "transfer-encoding",
            "host",
            "connection",
            "trailer",
            "content_length",
            "Transfer_Encoding",
        ] {
            trailers.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_static("5"),
            );
        }
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        assert_eq!(
            hello_chunked_with(trailers).await,
            b"5\r\nhello\r\n0\r\ngrpc-status: 0\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn length_mismatch_is_an_error() {
        let mut body = Body::from("abc");
        let mut out = Vec::new();
        let err = send_body(
            &mut out,
            &mut BytesMut::new(),
            &mut body,
            Framing::Length(5),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, SendBodyError::LengthMismatch));
    }
}
