//! Cutting frames out of a read buffer, with the length cap checked first.

use bytes::{Buf, Bytes, BytesMut};

use crate::protocol::{DecodeError, Protocol};

/// Room reserved at a time for a frame still arriving: memory follows the bytes that
/// actually came, not the length a peer declared.
const RESERVE_STEP: usize = 64 * 1024;

/// The next complete frame in `buf`, if all of it has arrived. The declared length is
/// checked against `max` as soon as the fixed header is there, before the rest is
/// buffered.
pub(crate) fn next_frame<P: Protocol + ?Sized>(
    proto: &P,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<Bytes>, DecodeError> {
    match proto.frame_length(buf)? {
        None => Ok(None),
        Some(len) if len > max as u64 => Err(DecodeError::TooLarge { len, max }),
        Some(len) => {
            let len = len as usize;
            if buf.len() >= len {
                Ok(Some(buf.split_to(len).freeze()))
            } else {
                buf.reserve((len - buf.len()).min(RESERVE_STEP));
                Ok(None)
            }
        }
    }
}

/// Drops the next bytes of a frame being skipped (one over the length cap whose
/// header named its call): at most `*remaining` from the front of `buf`. Its body is
/// never buffered whole; `*remaining` is 0 once it has all gone by.
pub(crate) fn skip(buf: &mut BytesMut, remaining: &mut u64) {
    let n = (*remaining).min(buf.len() as u64);
    buf.advance(n as usize);
    *remaining -= n;
}
