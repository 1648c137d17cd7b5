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
                        let Some(line_end) = find_line_end(buf, MAX_CHUNK_LINE)? else {
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
                            // The same bound whether the section came in one read
                            // or in pieces.
                            Ok(httparse::Status::Complete((len, _))) if len > MAX_TRAILER_BYTES => {
                                return Err(DecodeError::BadTrailers)
                            }
                            Ok(httparse::Status::Complete((len, fields))) => {
                                let mut map = HeaderMap::new();
                                for f in fields {
                                    let name = http::HeaderName::from_bytes(f.name.as_bytes())
                                        .map_err(|_| DecodeError::BadTrailers)?;
                                    // Framing and connection fields mean nothing after
                                    // the content: not passed on, whatever the next hop
                                    // speaks (RFC 9110, section 6.5.1).
                                    if super::names::barred_from_trailers(name.as_str()) {
                                        continue;
                                    }
                                    let value = http::HeaderValue::from_bytes(f.value)
                                        .map_err(|_| DecodeError::BadTrailers)?;
                                    map.append(name, value);
                                }
                                buf.advance(len);
                                *self = Self::Done;
                                // Nothing left to pass on: no trailers at all.
                                if map.is_empty() {
                                    return Ok(Step::Done);
                                }
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

/// Where the chunk-size line at the front of `buf` ends (the index of its CR), or
/// `None` while it may still be arriving. A line that cannot become one is refused as
/// soon as it shows, not after waiting for a CRLF that a peer ending its lines with a
/// bare LF never sends: a first byte that is not a hex digit, a bare LF, a CR not
/// followed by LF, or more than `limit` bytes.
fn find_line_end(buf: &[u8], limit: usize) -> Result<Option<usize>, DecodeError> {
    let bad = Err(DecodeError::BadChunkSize);
    if buf.first().is_some_and(|b| !b.is_ascii_hexdigit()) {
        return bad;
    }
    match buf
        .iter()
        .take(limit + 1)
        .position(|&b| b == b'\r' || b == b'\n')
    {
        Some(i) if buf[i] == b'\n' => bad,
        Some(i) => match buf.get(i + 1) {
            Some(b'\n') => Ok(Some(i)),
            Some(_) => bad,
            None => Ok(None),
        },
        None if buf.len() > limit => bad,
        None => Ok(None),
    }
}

/// Parses a chunk-size line (RFC 9112 7.1): hex digits, then chunk extensions
/// checked to the grammar and discarded (they are not forwarded):
///
/// ```text
/// chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
/// chunk-ext-name = token
/// chunk-ext-val  = token / quoted-string
/// ```
///
/// Anything else (leading white space, a bare `;`, an unterminated or malformed
/// quoted string, a control character) is refused rather than guessed at.
fn parse_chunk_size(line: &[u8]) -> Result<u64, DecodeError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    // Leading zeros are allowed (`1*HEXDIG`) and do not count towards the size's
    // limit: 15 significant digits, under 2^60 bytes.
    let zeros = line[..digits].iter().take_while(|&&b| b == b'0').count();
    if digits == 0 || digits - zeros > 15 {
        return Err(DecodeError::BadChunkSize);
    }
    let mut n: u64 = 0;
    for &b in &line[..digits] {
        let d = (b as char).to_digit(16).ok_or(DecodeError::BadChunkSize)?;
        n = (n << 4) | u64::from(d);
    }
    check_chunk_ext(&line[digits..])?;
    Ok(n)
}

fn check_chunk_ext(mut s: &[u8]) -> Result<(), DecodeError> {
    let bad = DecodeError::BadChunkSize;
    loop {
        if s.is_empty() {
            return Ok(());
        }
        // White space only before a `;`: `5 ` alone is not a chunk-size line.
        let Some(rest) = skip_bws(s).strip_prefix(b";") else {
            return Err(bad);
        };
        s = skip_bws(rest);
        let name = s.iter().take_while(|&&b| is_tchar(b)).count();
        if name == 0 {
            return Err(bad);
        }
        s = &s[name..];
        let after = skip_bws(s);
        if let Some(rest) = after.strip_prefix(b"=") {
            s = skip_bws(rest);
            if s.first() == Some(&b'"') {
                s = quoted_string(&s[1..]).ok_or(bad)?;
            } else {
                let value = s.iter().take_while(|&&b| is_tchar(b)).count();
                if value == 0 {
                    return Err(bad);
                }
                s = &s[value..];
            }
        }
    }
}

/// The rest after a quoted string whose opening quote was consumed, or `None` when it
/// is unterminated or holds a byte the grammar does not allow (CR, LF, NUL, DEL).
fn quoted_string(s: &[u8]) -> Option<&[u8]> {
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'"' => return Some(&s[i + 1..]),
            b'\\' => {
                let next = *s.get(i + 1)?;
                if !(next == b'\t' || next == b' ' || (0x21..=0x7e).contains(&next) || next >= 0x80)
                {
                    return None;
                }
                i += 2;
            }
            b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => i += 1,
            _ => return None,
        }
    }
    None
}

fn skip_bws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &s[n..]
}

/// RFC 9110 `tchar`.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
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
    fn chunk_sizes_may_have_leading_zeros_but_not_more_than_fifteen_digits() {
        let (body, _) = decode_all(
            Framing::Chunked,
            b"0000000000000000000005\r\nhello\r\n0000\r\n\r\n",
        )
        .unwrap();
        assert_eq!(body, b"hello");
        assert_eq!(
            decode_all(Framing::Chunked, b"01000000000000000\r\n").unwrap_err(),
            DecodeError::BadChunkSize
        );
    }

    #[test]
    fn framing_fields_in_trailers_are_not_passed_on() {
        let (body, trailers) = decode_all(
            Framing::Chunked,
            b"2\r\nok\r\n0\r\nContent-Length: 9\r\nTransfer_Encoding: chunked\r\nHost: b\r\n\
              grpc-status: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(body, b"ok");
        let trailers = trailers.unwrap();
        assert_eq!(trailers.len(), 1, "{trailers:?}");
        assert_eq!(trailers["grpc-status"], "0");
        // Only barred fields: as if the section were empty.
        let (body, trailers) = decode_all(
            Framing::Chunked,
            b"2\r\nok\r\n0\r\nContent-Length: 9\r\n\r\n",
        )
        .unwrap();
        assert_eq!(body, b"ok");
        assert!(trailers.is_none());
    }

    /// Decodes `input` from one buffer, as when it all came in one read.
    fn decode_at_once(framing: Framing, input: &[u8]) -> Result<Vec<Step>, DecodeError> {
        let mut d = Decoder::new(framing);
        let mut buf = BytesMut::from(input);
        let mut steps = Vec::new();
        loop {
            match d.decode(&mut buf)? {
                Step::Done => return Ok(steps),
                Step::NeedMore => return Err(DecodeError::UnexpectedEof),
                step => steps.push(step),
            }
        }
    }

    #[test]
    fn a_trailer_section_over_the_limit_is_refused_however_it_arrives() {
        let mut big = b"2\r\nok\r\n0\r\n".to_vec();
        for i in 0..40 {
            big.extend_from_slice(format!("x-t-{i}: {}\r\n", "v".repeat(500)).as_bytes());
        }
        big.extend_from_slice(b"\r\n");
        assert!(big.len() > MAX_TRAILER_BYTES);
        assert_eq!(
            decode_at_once(Framing::Chunked, &big).unwrap_err(),
            DecodeError::BadTrailers
        );
        assert_eq!(
            decode_all(Framing::Chunked, &big).unwrap_err(),
            DecodeError::BadTrailers
        );
        // More fields than a section may hold, however small.
        let mut many = b"0\r\n".to_vec();
        for i in 0..100 {
            many.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(
            decode_at_once(Framing::Chunked, &many).unwrap_err(),
            DecodeError::BadTrailers
        );
        // Within the limit, in one read: passed on.
        let steps = decode_at_once(Framing::Chunked, b"2\r\nok\r\n0\r\nx-a: 1\r\n\r\n").unwrap();
        assert!(matches!(steps.last(), Some(Step::Trailers(t)) if t["x-a"] == "1"));
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
    fn chunk_extensions_follow_the_grammar() {
        // Well-formed extensions are accepted and not part of the data.
        for line in [
            &b"5;a"[..],
            b"5;a=b",
            b"5 ; a = b ; c",
            b"5;name=\"quoted value; with = signs\"",
            b"5;q=\"esc\\\"aped\"",
            b"5;\tx=1",
        ] {
            let mut input = line.to_vec();
            input.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
            let (data, _) = decode_all(Framing::Chunked, &input)
                .unwrap_or_else(|e| panic!("{:?}: {e:?}", String::from_utf8_lossy(line)));
            assert_eq!(data, b"hello", "{:?}", String::from_utf8_lossy(line));
        }
        // Malformed ones are refused: no guessing where the size ends.
        for line in [
            &b" 5"[..],
            b"5 ",
            b"5;",
            b"5;=b",
            b"5;a=",
            b"5;a=\"unterminated",
            b"5;a=\"bad\x00byte\"",
            b"5;a=\"cr\rinside\"",
            b"5;a=b c",
            b"5x",
            b"0x5",
            b"5;a=\"x\"y",
        ] {
            let mut input = line.to_vec();
            input.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
            assert_eq!(
                decode_all(Framing::Chunked, &input).unwrap_err(),
                DecodeError::BadChunkSize,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn a_chunk_size_line_that_cannot_end_in_crlf_is_refused_before_more_arrives() {
        // Each is refused with nothing more to read: no wait for a CRLF.
        for partial in [
            &b"5\nhello\n0\n\n"[..],
            b"5\n",
            b"5;a\nb",
            b"5\rX",
            b"z",
            b";a",
            b" 5",
        ] {
            let mut d = Decoder::new(Framing::Chunked);
            let mut buf = BytesMut::from(partial);
            assert_eq!(
                d.decode(&mut buf).unwrap_err(),
                DecodeError::BadChunkSize,
                "{:?}",
                String::from_utf8_lossy(partial)
            );
        }
        // A line still arriving waits, however it is cut.
        for partial in [&b"5"[..], b"5\r", b"5;a=\"b", b"0"] {
            let mut d = Decoder::new(Framing::Chunked);
            let mut buf = BytesMut::from(partial);
            assert!(
                matches!(d.decode(&mut buf), Ok(Step::NeedMore)),
                "{:?}",
                String::from_utf8_lossy(partial)
            );
        }
        // An over-long line is refused once it passes the limit.
        let mut d = Decoder::new(Framing::Chunked);
        let mut buf = BytesMut::from(&b"5;a="[..]);
        buf.extend_from_slice(&vec![b'x'; MAX_CHUNK_LINE]);
        assert_eq!(d.decode(&mut buf).unwrap_err(), DecodeError::BadChunkSize);
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
