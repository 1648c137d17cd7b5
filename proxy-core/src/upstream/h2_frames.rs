//! What the proxy reads for itself from an HTTP/2 upstream's frames, alongside `h2`:
//! when the connection's first frame has passed, and the last stream each GOAWAY
//! names.
//!
//! An HTTP/2 server opens its side of the connection with a SETTINGS frame (RFC 9113
//! 3.4) that may name `SETTINGS_MAX_CONCURRENT_STREAMS`, the limit by which the
//! requests are spread over connections ([`super::h2::H2Client`], which reads it
//! from `h2` as it stands, later changes included). A new connection is used once
//! that first frame was read (within the connect timeout), so that a first burst of
//! requests is spread by the upstream's limit rather than by the one assumed before
//! it.
//!
//! A GOAWAY names the last stream the upstream may have processed; those above it it
//! did not, whatever the frame's error code (RFC 9113 6.8), and may be sent again on
//! another connection. `h2` fails every stream of a connection that went away with an
//! error with that same error, those the upstream processed and those it did not, so
//! the frames are read here for the stream the GOAWAY names
//! ([`UpstreamFrames::turned_away`]). Only frame headers and a GOAWAY's first four
//! bytes are looked at: `h2` checks the frames, and refuses those it cannot read.

use std::{
    pin::Pin,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const FRAME_HEADER: usize = 9;
const GOAWAY: u8 = 0x7;
/// No GOAWAY came yet.
const NO_GOAWAY: u32 = u32::MAX;

/// What one upstream connection's frames told: its first frame was read, the last
/// stream of its lowest GOAWAY.
#[derive(Debug)]
pub(crate) struct UpstreamFrames {
    first: tokio::sync::Notify,
    /// The last stream the latest GOAWAY names (a later one may only name a lower
    /// one); [`NO_GOAWAY`] before one.
    go_away_last: AtomicU32,
}

impl UpstreamFrames {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            first: tokio::sync::Notify::new(),
            go_away_last: AtomicU32::new(NO_GOAWAY),
        })
    }

    /// Waits until the connection's first frame was read, or it ended. For one
    /// waiter, the connection's opener.
    pub(crate) async fn first_read(&self) {
        self.first.notified().await;
    }

    /// Whether the upstream said, with a GOAWAY naming a lower last stream, that it
    /// did not process the stream `id` (RFC 9113 6.8): the request on it may go again.
    pub(crate) fn turned_away(&self, id: u32) -> bool {
        let last = self.go_away_last.load(Ordering::Acquire);
        last != NO_GOAWAY && id > last
    }

    fn went_away(&self, last: u32) {
        // A later GOAWAY may not name a higher stream (section 6.8); `h2` ends the
        // connection on one that does, and the lower figure stands.
        self.go_away_last.fetch_min(last, Ordering::AcqRel);
    }
}

/// A stream whose reads are followed frame by frame, for [`UpstreamFrames`].
pub(crate) struct FrameWatch<S> {
    inner: S,
    frames: Arc<UpstreamFrames>,
    /// The first frame has not passed yet: its opener waits.
    first_pending: bool,
    at: FrameCursor,
}

/// Where the bytes read so far leave off in the frame sequence.
#[derive(Debug, Default)]
struct FrameCursor {
    header: [u8; FRAME_HEADER],
    /// Bytes of the current frame's header read; the header is whole at
    /// [`FRAME_HEADER`], its payload then being read.
    header_read: usize,
    /// Bytes of the current frame's payload still to come.
    payload_left: usize,
    /// Of a GOAWAY's payload, the last-stream field read so far, and how much of it.
    go_away: Option<([u8; 4], usize)>,
}

/// What reading some bytes passed.
#[derive(Debug, Default, PartialEq, Eq)]
struct Passed {
    /// Frames ended in them.
    frames_ended: usize,
    /// The last stream of the lowest GOAWAY among them.
    go_away_last: Option<u32>,
}

impl Passed {
    /// Notes a GOAWAY naming `last`.
    fn go_away(&mut self, last: u32) {
        self.go_away_last = Some(self.go_away_last.map_or(last, |l| l.min(last)));
    }

    /// Adds what later bytes passed.
    fn and(&mut self, later: Passed) {
        self.frames_ended += later.frames_ended;
        if let Some(last) = later.go_away_last {
            self.go_away(last);
        }
    }
}

impl FrameCursor {
    fn read(&mut self, mut bytes: &[u8]) -> Passed {
        let mut passed = Passed::default();
        while !bytes.is_empty() {
            if self.header_read < FRAME_HEADER {
                let take = (FRAME_HEADER - self.header_read).min(bytes.len());
                self.header[self.header_read..self.header_read + take]
                    .copy_from_slice(&bytes[..take]);
                self.header_read += take;
                bytes = &bytes[take..];
                if self.header_read == FRAME_HEADER {
                    self.start_payload(&mut passed);
                }
                continue;
            }
            let take = self.payload_left.min(bytes.len());
            if let Some((field, read)) = &mut self.go_away {
                let part = (4 - *read).min(take);
                field[*read..*read + part].copy_from_slice(&bytes[..part]);
                *read += part;
                if *read == 4 {
                    // The field's top bit is reserved (section 6.8).
                    passed.go_away(u32::from_be_bytes(*field) & 0x7fff_ffff);
                    self.go_away = None;
                }
            }
            self.payload_left -= take;
            bytes = &bytes[take..];
            if self.payload_left == 0 {
                self.end_frame(&mut passed);
            }
        }
        passed
    }

    fn start_payload(&mut self, passed: &mut Passed) {
        let h = &self.header;
        self.payload_left = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        // A GOAWAY shorter than its fields is `h2`'s to refuse.
        self.go_away =
            (h[3] == GOAWAY && stream == 0 && self.payload_left >= 8).then_some(([0; 4], 0));
        if self.payload_left == 0 {
            self.end_frame(passed);
        }
    }

    fn end_frame(&mut self, passed: &mut Passed) {
        self.header_read = 0;
        self.go_away = None;
        passed.frames_ended += 1;
    }
}

/// Follows `data` as an upstream's frames, read in pieces as long as its first
/// byte says (at least one); for the fuzz target. Nothing it passes may panic.
pub(crate) fn follow_in_pieces(data: &[u8]) {
    let Some((&piece, frames)) = data.split_first() else {
        return;
    };
    let passed = read_in_pieces(frames, usize::from(piece).max(1));
    // Each frame ends no sooner than its nine-byte header.
    assert!(passed.frames_ended <= frames.len() / FRAME_HEADER);
}

/// What `bytes` pass when read in pieces of `piece` bytes.
fn read_in_pieces(bytes: &[u8], piece: usize) -> Passed {
    let mut at = FrameCursor::default();
    let mut all = Passed::default();
    for chunk in bytes.chunks(piece) {
        all.and(at.read(chunk));
        assert!(at.header_read <= FRAME_HEADER);
    }
    all
}

impl<S> FrameWatch<S> {
    /// Follows `inner`'s reads, telling `frames` what they pass.
    pub(crate) fn new(inner: S, frames: Arc<UpstreamFrames>) -> Self {
        Self {
            inner,
            frames,
            first_pending: true,
            at: FrameCursor::default(),
        }
    }

    fn first_passed(&mut self) {
        if self.first_pending {
            self.first_pending = false;
            self.frames.first.notify_one();
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FrameWatch<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = &buf.filled()[before..];
        if !read.is_empty() {
            let passed = self.at.read(read);
            if let Some(last) = passed.go_away_last {
                self.frames.went_away(last);
            }
            if passed.frames_ended > 0 {
                self.first_passed();
            }
        } else if polled.is_ready() {
            // The connection ended (or failed), perhaps before its first frame.
            self.first_passed();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FrameWatch<S> {
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

    /// A GOAWAY naming `last` (its reserved bit set when `reserved`), with `reason`
    /// and some debug data.
    fn go_away(last: u32, reason: u32, reserved: bool) -> Vec<u8> {
        let debug = b"bye";
        let len = u8::try_from(8 + debug.len()).expect("small");
        let mut frame = vec![0, 0, len, GOAWAY, 0, 0, 0, 0, 0];
        let field = if reserved { last | 0x8000_0000 } else { last };
        frame.extend_from_slice(&field.to_be_bytes());
        frame.extend_from_slice(&reason.to_be_bytes());
        frame.extend_from_slice(debug);
        frame
    }

    /// A DATA frame on `stream` of `len` bytes.
    fn data(stream: u32, len: usize) -> Vec<u8> {
        let l = u32::try_from(len).expect("small").to_be_bytes();
        let mut frame = vec![l[1], l[2], l[3], 0x0, 0];
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend(std::iter::repeat_n(b'x', len));
        frame
    }

    #[test]
    fn every_frame_and_the_go_away_last_stream_are_found_however_the_reads_cut_them() {
        let mut bytes = settings(100);
        bytes.extend(data(1, 0));
        bytes.extend(data(3, 40));
        bytes.extend(go_away(5, 0x2, true));
        bytes.extend(data(5, 17));
        for piece in 1..=bytes.len() {
            let passed = read_in_pieces(&bytes, piece);
            assert_eq!(
                passed,
                Passed {
                    frames_ended: 5,
                    go_away_last: Some(5)
                },
                "reads of {piece} bytes"
            );
        }
    }

    #[test]
    fn the_lowest_of_two_go_aways_stands() {
        let mut bytes = go_away(0x7fff_ffff, 0, false);
        bytes.extend(go_away(9, 0, false));
        assert_eq!(read_in_pieces(&bytes, 7).go_away_last, Some(9));
        let frames = UpstreamFrames::new();
        frames.went_away(0x7fff_ffff);
        assert!(!frames.turned_away(11));
        frames.went_away(9);
        frames.went_away(21);
        assert!(frames.turned_away(11));
        assert!(
            !frames.turned_away(9),
            "the last stream named may have been processed"
        );
    }

    #[test]
    fn no_go_away_turns_nothing_away_and_a_go_away_on_a_stream_or_too_short_is_not_read() {
        let frames = UpstreamFrames::new();
        assert!(!frames.turned_away(1));
        assert!(!frames.turned_away(0x7fff_ffff));
        let mut on_stream = go_away(1, 0, false);
        on_stream[8] = 3;
        assert_eq!(read_in_pieces(&on_stream, 4).go_away_last, None);
        let short = vec![0, 0, 4, GOAWAY, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(read_in_pieces(&short, 1).go_away_last, None);
    }

    /// A frame of `kind` on `stream` with a payload of `len` bytes; a GOAWAY (on
    /// stream 0, at least 8 bytes) names `last`.
    fn frame(kind: u8, stream: u32, len: usize, last: u32) -> Vec<u8> {
        let l = u32::try_from(len).expect("small").to_be_bytes();
        let mut frame = vec![l[1], l[2], l[3], kind, 0];
        frame.extend_from_slice(&stream.to_be_bytes());
        let mut payload = vec![0xa5; len];
        if kind == GOAWAY && len >= 4 {
            payload[..4].copy_from_slice(&last.to_be_bytes());
        }
        frame.extend(payload);
        frame
    }

    proptest::proptest! {
        #[test]
        fn frames_are_counted_and_the_lowest_go_away_found_in_any_reads(
            frames in proptest::collection::vec(
                (0u8..10, 0u32..4, 0usize..40, 0u32..0x7fff_ffff),
                0..12,
            ),
            piece in 1usize..64,
        ) {
            let mut bytes = Vec::new();
            let mut lowest: Option<u32> = None;
            for &(kind, stream, len, last) in &frames {
                bytes.extend(frame(kind, stream, len, last));
                if kind == GOAWAY && stream == 0 && len >= 8 {
                    lowest = Some(lowest.map_or(last, |l| l.min(last)));
                }
            }
            let passed = read_in_pieces(&bytes, piece);
            proptest::prop_assert_eq!(passed.frames_ended, frames.len());
            proptest::prop_assert_eq!(passed.go_away_last, lowest);
        }

        #[test]
        fn no_bytes_make_the_follower_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            follow_in_pieces(&data);
        }
    }

    #[tokio::test]
    async fn reads_byte_by_byte_pass_every_byte_and_end_the_wait_after_the_first_frame() {
        use tokio::io::AsyncReadExt;
        let mut bytes = settings(7);
        bytes.extend(go_away(0, 0xb, false));
        let mut mock = std::io::Cursor::new(bytes.clone());
        let frames = UpstreamFrames::new();
        let mut watched = FrameWatch::new(&mut mock, frames.clone());
        let mut read = Vec::new();
        let mut one = [0u8; 1];
        for _ in 0..14 {
            assert_eq!(watched.read(&mut one).await.expect("read"), 1);
            read.push(one[0]);
        }
        assert!(watched.first_pending, "one byte of the frame to come");
        while watched.read(&mut one).await.expect("read") == 1 {
            read.push(one[0]);
        }
        assert_eq!(read, bytes);
        assert!(!watched.first_pending);
        // The opener waiting for the first frame is let through.
        frames.first_read().await;
        assert!(frames.turned_away(1));
    }

    #[tokio::test]
    async fn a_connection_ending_before_its_first_frame_ends_the_wait() {
        use tokio::io::AsyncReadExt;
        let mut mock = std::io::Cursor::new(settings(7)[..5].to_vec());
        let frames = UpstreamFrames::new();
        let mut watched = FrameWatch::new(&mut mock, frames.clone());
        let mut all = Vec::new();
        watched.read_to_end(&mut all).await.expect("read");
        assert_eq!(all.len(), 5);
        frames.first_read().await;
    }
}
