//! Incremental body decoding: content-length, chunked (with trailers) and
//! read-until-close, over a caller-owned buffer.

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;

use super::head::Framing;

const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// What the decoder produced from the buffer.
#[derive(Debug)]
pub(crate) enum Step {
    Data(Bytes),
    Trailers(HeaderMap),
    /// More bytes are needed.
    NeedMore,
    /// The body is complete.
    Done,
}

/// Why a body could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("invalid chunk size line")]
    BadChunkSize,
    #[error("missing CRLF after chunk data")]
    BadChunkEnd,
    #[error("invalid or oversized trailer section")]
    BadTrailers,
    #[error("connection closed before the body was complete")]
    UnexpectedEof,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunked {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// Body decoder state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decoder {
    Length(u64),
    Chunked(ChunkState),
    Close,
    Done,
}

/// Opaque chunked-decoding state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkState(Chunked);

impl Decoder {
    pub(crate) fn new(framing: Framing) -> Self {
        match framing {
            Framing::Empty | Framing::Length(0) => Self::Done,
            Framing::Length(n) => Self::Length(n),
            Framing::Chunked => Self::Chunked(ChunkState(Chunked::Size)),
            Framing::Close => Self::Close,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(self, Self::Done)
    }

    /// Bytes still expected, when known.
    pub(crate) fn remaining(&self) -> Option<u64> {
        match self {
            Self::Length(n) => Some(*n),
            Self::Done => Some(0),
            _ => None,
        }
    }

    /// Called when the peer closed the connection.
    pub(crate) fn eof(&mut self) -> Result<Step, DecodeError> {
        match self {
            Self::Close | Self::Done => {
                *self = Self::Done;
                Ok(Step::Done)
            }
            _ => Err(DecodeError::UnexpectedEof),
        }
    }

    /// Decodes the next step from `buf`, consuming what it uses.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Step, DecodeError> {
        loop {
            match self {
                Self::Done => return Ok(Step::Done),
                Self::Length(n) => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let take = (*n).min(buf.len() as u64) as usize;
                    *n -= take as u64;
                    if *n == 0 {
                        *self = Self::Done;
                    }
                    return Ok(Step::Data(buf.split_to(take).freeze()));
                }
                Self::Close => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    return Ok(Step::Data(buf.split().freeze()));
                }
                Self::Chunked(ChunkState(state)) => match *state {
                    Chunked::Size => {
                        let Some(line_end) = find_crlf(buf, MAX_CHUNK_LINE)? else {
                            return Ok(Step::NeedMore);
                        };
                        let size = parse_chunk_size(&buf[..line_end])?;
                        buf.advance(line_end + 2);
                        *state = if size == 0 {
                            Chunked::Trailers
                        } else {
                            Chunked::Data(size)
                        };
                    }
                    Chunked::Data(n) => {
                        if buf.is_empty() {
                            return Ok(Step::NeedMore);
                        }
                        let take = n.min(buf.len() as u64) as usize;
                        let left = n - take as u64;
                        *state = if left == 0 {
                            Chunked::DataEnd
                        } else {
                            Chunked::Data(left)
                        };
                        return Ok(Step::Data(buf.split_to(take).freeze()));
                    }
                    Chunked::DataEnd => {
                        if buf.len() < 2 {
                            return Ok(Step::NeedMore);
                        }
                        if &buf[..2] != b"\r\n" {
                            return Err(DecodeError::BadChunkEnd);
                        }
                        buf.advance(2);
                        *state = Chunked::Size;
                    }
                    Chunked::Trailers => {
                        if buf.starts_with(b"\r\n") {
                            buf.advance(2);
                            *self = Self::Done;
                            return Ok(Step::Done);
                        }
                        let mut storage = [httparse::EMPTY_HEADER; 64];
                        match httparse::parse_headers(buf, &mut storage) {
                            Ok(httparse::Status::Complete((len, fields))) => {
                                let mut map = HeaderMap::new();
                                for f in fields {
                                    let name = http::HeaderName::from_bytes(f.name.as_bytes())
                                        .map_err(|_| DecodeError::BadTrailers)?;
                                    let value = http::HeaderValue::from_bytes(f.value)
                                        .map_err(|_| DecodeError::BadTrailers)?;
                                    map.append(name, value);
                                }
                                buf.advance(len);
                                *self = Self::Done;
                                return Ok(Step::Trailers(map));
                            }
                            Ok(httparse::Status::Partial) if buf.len() <= MAX_TRAILER_BYTES => {
                                return Ok(Step::NeedMore)
                            }
                            _ => return Err(DecodeError::BadTrailers),
                        }
                    }
                },
            }
        }
    }
}

fn find_crlf(buf: &[u8], limit: usize) -> Result<Option<usize>, DecodeError> {
    match buf.windows(2).take(limit).position(|w| w == b"\r\n") {
        Some(i) => Ok(Some(i)),
        None if buf.len() > limit => Err(DecodeError::BadChunkSize),
        None => Ok(None),
    }
}

fn parse_chunk_size(line: &[u8]) -> Result<u64, DecodeError> {
    // Chunk extensions after ';' are ignored.
    let hex = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if hex.is_empty() || hex.len() > 15 {
        return Err(DecodeError::BadChunkSize);
    }
    let mut n: u64 = 0;
    for &b in hex {
        let d = (b as char).to_digit(16).ok_or(DecodeError::BadChunkSize)?;
        n = (n << 4) | u64::from(d);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(
        framing: Framing,
        input: &[u8],
    ) -> Result<(Vec<u8>, Option<HeaderMap>), DecodeError> {
        let mut d = Decoder::new(framing);
        let mut out = Vec::new();
        let mut trailers = None;
        // Feed one byte at a time to exercise partial input.
        let mut buf = BytesMut::new();
        let mut i = 0;
        loop {
            match d.decode(&mut buf)? {
                Step::Data(b) => out.extend_from_slice(&b),
                Step::Trailers(t) => trailers = Some(t),
                Step::Done => return Ok((out, trailers)),
                Step::NeedMore => {
                    if i == input.len() {
                        d.eof()?;
                        return Ok((out, trailers));
                    }
                    buf.extend_from_slice(&input[i..=i]);
                    i += 1;
                }
            }
        }
    }

    #[test]
    fn chunked_with_trailers() {
        let (body, trailers) = decode_all(
            Framing::Chunked,
            b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\ngrpc-status: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(body, b"hello world");
        assert_eq!(trailers.unwrap()["grpc-status"], "0");
        let (body, trailers) = decode_all(Framing::Chunked, b"3\r\nabc\r\n0\r\n\r\n").unwrap();
        assert_eq!(body, b"abc");
        assert!(trailers.is_none());
    }

    #[test]
    fn chunked_errors() {
        assert_eq!(
            decode_all(Framing::Chunked, b"zz\r\n").unwrap_err(),
            DecodeError::BadChunkSize
        );
        assert_eq!(
            decode_all(Framing::Chunked, b"3\r\nabcX\r\n").unwrap_err(),
            DecodeError::BadChunkEnd
        );
        assert_eq!(
            decode_all(Framing::Chunked, b"ffffffffffffffffff\r\n").unwrap_err(),
            DecodeError::BadChunkSize
        );
        assert_eq!(
            decode_all(Framing::Chunked, b"3\r\nab").unwrap_err(),
            DecodeError::UnexpectedEof
        );
    }

    #[test]
    fn length_and_close() {
        assert_eq!(decode_all(Framing::Length(3), b"abcdef").unwrap().0, b"abc");
        assert_eq!(
            decode_all(Framing::Length(5), b"abc").unwrap_err(),
            DecodeError::UnexpectedEof
        );
        assert_eq!(decode_all(Framing::Close, b"abcdef").unwrap().0, b"abcdef");
    }
}
