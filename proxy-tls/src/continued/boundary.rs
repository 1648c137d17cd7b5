//! [`RecordBoundary`]: a transport wrapper that tells whether the ciphertext read
//! through it so far ends at a TLS record boundary.
//!
//! rustls keeps a record it has only part of in a buffer it does not hand out, and
//! extracting the secrets drops that buffer. A session may therefore go to another
//! process only when the bytes rustls read end exactly at a record's end; this
//! wrapper tracks the record headers as the bytes pass (a few comparisons per read,
//! no copy).

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, ReadBuf};

use super::record::HEADER_LEN;

/// A transport whose reads are watched for TLS record boundaries.
///
/// ```
/// use proxy_tls::continued::RecordBoundary;
///
/// let io = RecordBoundary::new(tokio::io::empty());
/// assert!(io.at_record_boundary());
/// ```
#[derive(Debug)]
pub struct RecordBoundary<IO> {
    io: IO,
    header: [u8; HEADER_LEN],
    header_have: usize,
    body_left: usize,
}

impl<IO> RecordBoundary<IO> {
    /// Wraps `io`, whose first byte starts a record.
    pub fn new(io: IO) -> Self {
        Self {
            io,
            header: [0; HEADER_LEN],
            header_have: 0,
            body_left: 0,
        }
    }

    /// Whether every record read so far was read whole.
    pub fn at_record_boundary(&self) -> bool {
        self.header_have == 0 && self.body_left == 0
    }

    /// The transport.
    pub fn get_ref(&self) -> &IO {
        &self.io
    }

    /// The transport, no longer watched.
    pub fn into_inner(self) -> IO {
        self.io
    }

    /// Follows the record headers through `bytes`, the next ones read.
    fn observe(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(bytes.len());
                self.body_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (HEADER_LEN - self.header_have).min(bytes.len());
            self.header[self.header_have..self.header_have + n].copy_from_slice(&bytes[..n]);
            self.header_have += n;
            bytes = &bytes[n..];
            if self.header_have == HEADER_LEN {
                self.header_have = 0;
                self.body_left = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
            }
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for RecordBoundary<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            this.observe(&buf.filled()[before..]);
        }
        res
    }
}

crate::forward_write::forward_async_write!(RecordBoundary<IO>, io);

#[cfg(test)]
mod tests {
    use super::RecordBoundary;

    #[test]
    fn boundaries_follow_headers_across_reads() {
        let mut r = RecordBoundary::new(());
        let record = [23u8, 3, 3, 0, 3, 9, 9, 9];
        for split in 0..=record.len() {
            let (a, b) = record.split_at(split);
            r.observe(a);
            assert_eq!(r.at_record_boundary(), split == 0 || split == record.len());
            r.observe(b);
            assert!(r.at_record_boundary());
        }
        // Two records and the header of a third in one read.
        r.observe(&[23, 3, 3, 0, 1, 7, 23, 3, 3, 0, 0, 23, 3]);
        assert!(!r.at_record_boundary());
        r.observe(&[3, 0, 2, 1]);
        assert!(!r.at_record_boundary());
        r.observe(&[2]);
        assert!(r.at_record_boundary());
    }
}
