//! 0-RTT policy and the small stream adapters of the accept side.
//!
//! # What is guaranteed
//!
//! Early data is off by default. When `early_data.enabled` is set:
//! - it is accepted only on a resumed TLS 1.3 session whose ticket is single-use:
//!   stateless tickets are switched off and resumption state lives in the listener's
//!   in-process session cache, from which rustls *takes* the entry on use. A replayed
//!   ClientHello finds no entry, falls back to a full handshake and its early data is
//!   rejected. The guarantee holds per proxy process (every worker shares the cache);
//!   a replay to another proxy instance is not detected;
//! - the early bytes must be whole or partial HTTP/1.1 requests with a safe, idempotent
//!   method (`GET`, `HEAD`, `OPTIONS`) and no request body. Anything else (another
//!   method, a body, HTTP/2 frames, bytes that do not parse) is refused: an HTTP/1.1
//!   client gets `425 Too Early` (RFC 8470) and the connection closes, so the client
//!   retries after a full handshake; other bytes just close the connection.
//!
//! rustls hands the server early data as one byte stream, not per request, so the
//! check is over all early bytes of the connection.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Whether early data may be served: every request in it is a safe idempotent
/// HTTP/1.1 request without a body.
pub(crate) fn allowed(early: &[u8]) -> bool {
    let mut rest = early;
    while !rest.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(rest) {
            Ok(httparse::Status::Complete(len)) => {
                if !safe_method(req.method) || has_body(req.headers) {
                    return false;
                }
                rest = &rest[len..];
            }
            Ok(httparse::Status::Partial) => {
                // The head continues after the handshake: its method must be known
                // and safe already, and it must not announce a body so far.
                return safe_method(req.method) && !has_body(req.headers);
            }
            Err(_) => return false,
        }
    }
    true
}

fn safe_method(m: Option<&str>) -> bool {
    matches!(m, Some("GET" | "HEAD" | "OPTIONS"))
}

fn has_body(headers: &[httparse::Header<'_>]) -> bool {
    headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            || (h.name.eq_ignore_ascii_case("content-length") && h.value != b"0")
    })
}

/// Whether the early bytes look like HTTP/1.1 (to answer 425 rather than close).
pub(crate) fn looks_like_http1(early: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 0];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(early).is_ok() || matches!(req.parse(early), Err(httparse::Error::TooManyHeaders))
}

/// The response to refused early data.
pub(crate) const TOO_EARLY: &[u8] =
    b"HTTP/1.1 425 Too Early\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// A stream that yields `prefix` before reading from `inner` (the 0-RTT bytes read
/// during the handshake).
#[derive(Debug)]
pub(crate) struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: Bytes, inner: S) -> Self {
        Self { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.has_remaining() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A closed stream: the placeholder left in `Connection::stream` while the real one
/// is being handshaken.
#[derive(Debug)]
pub(crate) struct Closed;

impl AsyncRead for Closed {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Closed {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::ErrorKind::NotConnected.into()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_bodiless_http1_requests_pass() {
        assert!(allowed(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n"));
        assert!(allowed(
            b"GET / HTTP/1.1\r\nhost: a\r\n\r\nHEAD /x HTTP/1.1\r\nhost: a\r\n\r\n"
        ));
        assert!(allowed(b"GET /partial HTTP/1.1\r\nhos"));
        assert!(!allowed(
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\n\r\nhi"
        ));
        assert!(!allowed(
            b"GET / HTTP/1.1\r\nhost: a\r\n\r\nDELETE /x HTTP/1.1\r\n\r\n"
        ));
        assert!(!allowed(
            b"GET / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
        ));
        assert!(!allowed(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        assert!(!allowed(b"GE"));
        assert!(!allowed(b"\x16\x03\x01garbage"));
    }

    #[test]
    fn http1_is_recognised_for_the_425_answer() {
        assert!(looks_like_http1(b"POST / HTTP/1.1\r\nhost: a\r\n\r\n"));
        assert!(!looks_like_http1(b"\x00\x01binary"));
    }
}
