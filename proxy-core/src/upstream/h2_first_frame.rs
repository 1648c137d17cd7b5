//! The wait for a new HTTP/2 connection's first frame from the upstream.
//!
//! An HTTP/2 server opens its side of the connection with a SETTINGS frame (RFC 9113
//! 3.4) that may name `SETTINGS_MAX_CONCURRENT_STREAMS`, the limit by which the
//! requests are spread over connections ([`super::h2::H2Client`], which reads it
//! from `h2` as it stands, later changes included). A new connection is used once
//! that first frame was read (within the connect timeout), so that a first burst of
//! requests is spread by the upstream's limit rather than by the one assumed before
//! it; the connection's reads are watched until the frame has passed, and not after.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const FRAME_HEADER: usize = 9;

/// Signalled once a connection's first frame was read, or the connection ended first.
#[derive(Debug, Default)]
pub(crate) struct FirstFrame {
    read: tokio::sync::Notify,
}

impl FirstFrame {
    pub(crate) fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Waits until the connection's first frame was read, or it ended. For one
    /// waiter, the connection's opener.
    pub(crate) async fn read(&self) {
        self.read.notified().await;
    }
}

/// A stream whose reads are watched until the first HTTP/2 frame has passed.
pub(crate) struct FirstFrameWatch<S> {
    inner: S,
    first: Arc<FirstFrame>,
    /// What was read of the first frame; `None` once it was read.
    watching: Option<Progress>,
}

#[derive(Debug, Default)]
struct Progress {
    header: [u8; FRAME_HEADER],
    /// Bytes read from the connection so far.
    seen: usize,
}

impl<S> FirstFrameWatch<S> {
    /// Watches `inner`'s reads for the end of its first frame, signalled on `first`.
    pub(crate) fn new(inner: S, first: Arc<FirstFrame>) -> Self {
        Self {
            inner,
            first,
            watching: Some(Progress::default()),
        }
    }

    fn watch(&mut self, read: &[u8]) {
        let Some(p) = &mut self.watching else {
            return;
        };
        if p.seen < FRAME_HEADER {
            let take = (FRAME_HEADER - p.seen).min(read.len());
            p.header[p.seen..p.seen + take].copy_from_slice(&read[..take]);
        }
        p.seen += read.len();
        if p.seen < FRAME_HEADER {
            return;
        }
        let h = p.header;
        let length = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
        if p.seen >= FRAME_HEADER + length {
            self.stop_watching();
        }
    }

    fn stop_watching(&mut self) {
        self.watching = None;
        self.first.read.notify_one();
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FirstFrameWatch<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.watching.is_some() {
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

impl<S: AsyncWrite + Unpin> AsyncWrite for FirstFrameWatch<S> {
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

    /// A SETTINGS frame naming a stream limit of `streams`.
    fn settings(streams: u32) -> Vec<u8> {
        let mut frame = vec![0, 0, 6, 0x4, 0, 0, 0, 0, 0, 0, 0x3];
        frame.extend_from_slice(&streams.to_be_bytes());
        frame
    }

    #[tokio::test]
    async fn reads_byte_by_byte_pass_every_byte_and_end_the_wait_after_the_first_frame() {
        use tokio::io::AsyncReadExt;
        let mut bytes = settings(7);
        bytes.extend_from_slice(b"after the first frame");
        let mut mock = std::io::Cursor::new(bytes.clone());
        let first = FirstFrame::new();
        let mut watched = FirstFrameWatch::new(&mut mock, first.clone());
        let mut read = Vec::new();
        let mut one = [0u8; 1];
        for _ in 0..14 {
            assert_eq!(watched.read(&mut one).await.unwrap(), 1);
            read.push(one[0]);
        }
        assert!(watched.watching.is_some(), "one byte of the frame to come");
        while watched.read(&mut one).await.unwrap() == 1 {
            read.push(one[0]);
        }
        assert_eq!(read, bytes);
        assert!(watched.watching.is_none());
        // The opener waiting for the first frame is let through.
        first.read().await;
    }

    #[tokio::test]
    async fn a_connection_ending_before_its_first_frame_ends_the_wait() {
        use tokio::io::AsyncReadExt;
        let mut mock = std::io::Cursor::new(settings(7)[..5].to_vec());
        let first = FirstFrame::new();
        let mut watched = FirstFrameWatch::new(&mut mock, first.clone());
        let mut all = Vec::new();
        watched.read_to_end(&mut all).await.unwrap();
        assert_eq!(all.len(), 5);
        first.read().await;
    }
}
