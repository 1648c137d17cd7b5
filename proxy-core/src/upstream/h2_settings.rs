//! The upstream's stream limit, read off the first frame of an HTTP/2 connection.
//!
//! An HTTP/2 server opens its side of the connection with a SETTINGS frame (RFC 9113
//! 3.4) that may name `SETTINGS_MAX_CONCURRENT_STREAMS`. The connection's streams
//! are spread over as many connections as that limit asks for
//! ([`super::h2::H2Client`]); the client library keeps the figure to itself, so the
//! connection's reads are watched until that first frame has passed, and not after.
//! A new connection is used once that frame arrived (within the connect timeout),
//! so that a first burst of requests is not all put on it. A limit the upstream
//! changes later is not seen: the library then holds the requests above it until a
//! stream ends.

use std::{
    pin::Pin,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What a connection assumes until the upstream's first SETTINGS frame arrives: the
/// figure RFC 9113 5.1.2 recommends as the least a server allows.
pub(crate) const STREAMS_BEFORE_SETTINGS: u32 = 100;

const FRAME_HEADER: usize = 9;
const SETTINGS: u8 = 0x4;
const MAX_CONCURRENT_STREAMS: u16 = 0x3;
/// A first frame longer than this is not read for its limit (a SETTINGS frame holds
/// a handful of six-byte entries).
const LONGEST_FIRST_FRAME: usize = 1024;

/// The upstream's stream limit on one connection: [`STREAMS_BEFORE_SETTINGS`] until
/// its first SETTINGS frame says otherwise (`u32::MAX` when it names none).
#[derive(Debug)]
pub(crate) struct PeerLimit {
    streams: AtomicU32,
    /// Notified once the first frame was read (or the connection ended first).
    read: tokio::sync::Notify,
}

impl PeerLimit {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            streams: AtomicU32::new(STREAMS_BEFORE_SETTINGS),
            read: tokio::sync::Notify::new(),
        })
    }

    /// The streams the upstream allows at a time.
    pub(crate) fn streams(&self) -> u32 {
        self.streams.load(Ordering::Relaxed)
    }

    /// Waits until the connection's first frame was read, or it ended. For one
    /// waiter, the connection's opener.
    pub(crate) async fn first_frame_read(&self) {
        self.read.notified().await;
    }
}

/// A stream whose first HTTP/2 frame read is parsed for the upstream's stream limit.
pub(crate) struct LimitWatch<S> {
    inner: S,
    limit: Arc<PeerLimit>,
    /// The first frame's bytes so far; `None` once it was read.
    first: Option<Vec<u8>>,
}

impl<S> LimitWatch<S> {
    /// Watches `inner`'s reads for the limit it stores in `limit`.
    pub(crate) fn new(inner: S, limit: Arc<PeerLimit>) -> Self {
        Self {
            inner,
            limit,
            first: Some(Vec::with_capacity(64)),
        }
    }

    fn watch(&mut self, read: &[u8]) {
        let Some(first) = &mut self.first else {
            return;
        };
        first.extend_from_slice(read);
        match first_frame_limit(first) {
            FirstFrame::Incomplete => return,
            FirstFrame::Settings(limit) => self.limit.streams.store(limit, Ordering::Relaxed),
            FirstFrame::Other => {}
        }
        self.stop_watching();
    }

    fn stop_watching(&mut self) {
        self.first = None;
        self.limit.read.notify_one();
    }
}

/// What the bytes read so far say of the first frame.
#[derive(Debug, PartialEq, Eq)]
enum FirstFrame {
    Incomplete,
    /// A SETTINGS frame naming this stream limit (`u32::MAX` when it names none).
    Settings(u32),
    /// Not a SETTINGS frame, or one too long to read: the library fails the
    /// connection or goes on; the assumed limit stands.
    Other,
}

fn first_frame_limit(bytes: &[u8]) -> FirstFrame {
    let Some(header) = bytes.get(..FRAME_HEADER) else {
        return FirstFrame::Incomplete;
    };
    let length =
        usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
    if header[3] != SETTINGS || length > LONGEST_FIRST_FRAME || length % 6 != 0 {
        return FirstFrame::Other;
    }
    let Some(payload) = bytes.get(FRAME_HEADER..FRAME_HEADER + length) else {
        return FirstFrame::Incomplete;
    };
    // The last value of a setting named twice wins (RFC 9113 6.5.3).
    let limit = payload
        .chunks_exact(6)
        .rev()
        .find(|entry| u16::from_be_bytes([entry[0], entry[1]]) == MAX_CONCURRENT_STREAMS)
        .map(|entry| u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]));
    FirstFrame::Settings(limit.unwrap_or(u32::MAX))
}

impl<S: AsyncRead + Unpin> AsyncRead for LimitWatch<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.first.is_some() {
            let read = &buf.filled()[before..];
            if !read.is_empty() {
                self.watch(read);
            } else if polled.is_ready() {
                // The connection ended (or failed) before its first frame.
                self.stop_watching();
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LimitWatch<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(entries: &[(u16, u32)]) -> Vec<u8> {
        let len = entries.len() * 6;
        let mut frame = vec![0, 0, u8::try_from(len).unwrap(), SETTINGS, 0, 0, 0, 0, 0];
        for (id, value) in entries {
            frame.extend_from_slice(&id.to_be_bytes());
            frame.extend_from_slice(&value.to_be_bytes());
        }
        frame
    }

    #[test]
    fn the_first_settings_frame_names_the_limit() {
        let frame = settings(&[(0x4, 65_535), (MAX_CONCURRENT_STREAMS, 128), (0x5, 16_384)]);
        assert_eq!(first_frame_limit(&frame), FirstFrame::Settings(128));
        assert_eq!(first_frame_limit(&frame[..8]), FirstFrame::Incomplete);
        assert_eq!(first_frame_limit(&frame[..14]), FirstFrame::Incomplete);
        let twice = settings(&[(MAX_CONCURRENT_STREAMS, 10), (MAX_CONCURRENT_STREAMS, 4)]);
        assert_eq!(first_frame_limit(&twice), FirstFrame::Settings(4));
        assert_eq!(
            first_frame_limit(&settings(&[(0x4, 1)])),
            FirstFrame::Settings(u32::MAX)
        );
        // A first frame that is not SETTINGS, or malformed: the assumed limit stands.
        let mut ping = settings(&[]);
        ping[3] = 0x6;
        assert_eq!(first_frame_limit(&ping), FirstFrame::Other);
        let mut odd = settings(&[(0x3, 1)]);
        odd[2] = 5;
        assert_eq!(first_frame_limit(&odd), FirstFrame::Other);
    }

    #[tokio::test]
    async fn reads_byte_by_byte_still_find_the_limit_and_pass_every_byte() {
        use tokio::io::AsyncReadExt;
        let mut bytes = settings(&[(MAX_CONCURRENT_STREAMS, 7)]);
        bytes.extend_from_slice(b"after the first frame");
        let mut mock = std::io::Cursor::new(bytes.clone());
        let limit = PeerLimit::new();
        let mut watched = LimitWatch::new(&mut mock, limit.clone());
        assert_eq!(limit.streams(), STREAMS_BEFORE_SETTINGS);
        let mut read = Vec::new();
        let mut one = [0u8; 1];
        while watched.read(&mut one).await.unwrap() == 1 {
            read.push(one[0]);
        }
        assert_eq!(read, bytes);
        assert_eq!(limit.streams(), 7);
        assert!(watched.first.is_none());
        // The opener waiting for the first frame is let through.
        limit.first_frame_read().await;
    }
}
