//! Parsing and encoding of HTTP/1.x message heads (request line / status line and
//! header fields), with the framing rules of RFC 9112 section 6.

use std::mem::MaybeUninit;

use bytes::{BufMut, Bytes, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};

/// Most header fields parsed in one head; `max_headers` is capped to this.
pub(crate) const MAX_HEADERS: usize = 256;

/// How a message body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body at all.
    Empty,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

/// Why a head could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HeadError {
    #[error("malformed message head")]
    Malformed,
    #[error("too many header fields")]
    TooManyHeaders,
    #[error("message head too large")]
    TooLarge,
    #[error("invalid or conflicting content-length")]
    BadContentLength,
    #[error("unsupported or conflicting transfer-encoding")]
    BadTransferEncoding,
    #[error("missing or repeated host header")]
    BadHost,
    #[error("unsupported http version")]
    BadVersion,
    #[error("method not supported by this proxy")]
    Unsupported,
}

/// A parsed request head.
#[derive(Debug)]
pub(crate) struct RequestHead {
    pub(crate) parts: http::request::Parts,
    pub(crate) framing: Framing,
    pub(crate) keep_alive: bool,
    pub(crate) expect_continue: bool,
    pub(crate) upgrade: bool,
}

/// A parsed response head.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub(crate) parts: http::response::Parts,
    pub(crate) framing: Framing,
    pub(crate) keep_alive: bool,
}

/// Where a header's name and value sit in the head: `(name_start, name_end,
/// value_start, value_end)`.
type Span = (u32, u32, u32, u32);

/// Header spans: inline for the usual few dozen headers, on the heap past that.
struct Spans {
    inline: [Span; 32],
    len: usize,
    heap: Vec<Span>,
}

impl Spans {
    fn of(base: &[u8], headers: &[httparse::Header<'_>]) -> Self {
        let mut spans = Self {
            inline: [(0, 0, 0, 0); 32],
            len: headers.len(),
            heap: Vec::new(),
        };
        let start = base.as_ptr() as usize;
        let span = |h: &httparse::Header<'_>| {
            let n = (h.name.as_ptr() as usize - start) as u32;
            let v = (h.value.as_ptr() as usize - start) as u32;
            (n, n + h.name.len() as u32, v, v + h.value.len() as u32)
        };
        if headers.len() <= spans.inline.len() {
            for (slot, h) in spans.inline.iter_mut().zip(headers) {
                *slot = span(h);
            }
        } else {
            spans.heap = headers.iter().map(span).collect();
        }
        spans
    }

    fn as_slice(&self) -> &[Span] {
        if self.heap.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.heap
        }
    }
}

/// Room for the headers a proxy adds (forwarding headers, a rewritten host) without
/// growing the map.
const SPARE_HEADERS: usize = 4;

fn build_headers(head: &Bytes, spans: &[Span]) -> Result<HeaderMap, HeadError> {
    let mut map = HeaderMap::with_capacity(spans.len() + SPARE_HEADERS);
    for &(ns, ne, vs, ve) in spans {
        let name = HeaderName::from_bytes(&head[ns as usize..ne as usize])
            .map_err(|_| HeadError::Malformed)?;
        let value = HeaderValue::from_maybe_shared(head.slice(vs as usize..ve as usize))
            .map_err(|_| HeadError::Malformed)?;
        map.append(name, value);
    }
    Ok(map)
}

fn uninit_headers<'b>() -> [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS] {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

fn map_parse_error(e: httparse::Error, buf: &[u8]) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders => HeadError::TooManyHeaders,
        // httparse reports any request line it cannot read past the target as a version
        // error; only a well-formed `HTTP/x.y` of another major version is a 505.
        httparse::Error::Version if is_other_http_version(buf) => HeadError::BadVersion,
        _ => HeadError::Malformed,
    }
}

/// Whether the first line is `<method> <target> HTTP/<d>.<d>` with a major version
/// other than 1.
fn is_other_http_version(buf: &[u8]) -> bool {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(_), Some(_), Some(v), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    matches!(v, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
        if major.is_ascii_digit() && minor.is_ascii_digit() && *major != b'1')
}

/// Tries to parse a request head at the start of `buf`. On success the head bytes are
/// removed from `buf`; `Ok(None)` means more bytes are needed.
pub(crate) fn parse_request(
    buf: &mut BytesMut,
    max_headers: usize,
    max_head_bytes: usize,
) -> Result<Option<RequestHead>, HeadError> {
    // Tolerate leading empty lines (RFC 9112 2.2).
    while buf.starts_with(b"\r\n") {
        let _ = buf.split_to(2);
    }
    let mut storage = uninit_headers();
    let headers = &mut storage[..max_headers.clamp(1, MAX_HEADERS)];
    let mut req = httparse::Request::new(&mut []);
    let (len, spans, method, target, minor) = match req.parse_with_uninit_headers(buf, headers) {
        Ok(httparse::Status::Complete(len)) => {
            let n = Spans::of(buf, req.headers);
            let method = req.method.ok_or(HeadError::Malformed)?;
            let path = req.path.ok_or(HeadError::Malformed)?;
            let start = buf.as_ptr() as usize;
            let m = (method.as_ptr() as usize - start, method.len());
            let p = (path.as_ptr() as usize - start, path.len());
            (len, n, m, p, req.version.unwrap_or(1))
        }
        Ok(httparse::Status::Partial) => {
            if buf.len() > max_head_bytes {
                return Err(HeadError::TooLarge);
            }
            return Ok(None);
        }
        Err(e) => return Err(map_parse_error(e, buf)),
    };
    if len > max_head_bytes {
        return Err(HeadError::TooLarge);
    }
    let head = crate::bufs::take_front(buf, len);
    let method = Method::from_bytes(&head[method.0..method.0 + method.1])
        .map_err(|_| HeadError::Malformed)?;
    let uri = Uri::from_maybe_shared(head.slice(target.0..target.0 + target.1))
        .map_err(|_| HeadError::Malformed)?;
    // CONNECT tunnels are not offered (a TCP proxy listener does that job).
    if method == Method::CONNECT {
        return Err(HeadError::Unsupported);
    }
    if uri.path_and_query().is_none() && uri != "*" {
        return Err(HeadError::Malformed);
    }
    let headers = build_headers(&head, spans.as_slice())?;
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };

    let conn = connection_tokens(&headers);
    let keep_alive = match version {
        Version::HTTP_10 => conn.keep_alive && !conn.close,
        _ => !conn.close,
    };
    let upgrade =
        conn.upgrade && headers.contains_key(header::UPGRADE) && version == Version::HTTP_11;
    let expect_continue = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));

    let mut hosts = headers.get_all(header::HOST).iter();
    let host_count = hosts.by_ref().take(2).count();
    if host_count > 1 || (host_count == 0 && version == Version::HTTP_11) {
        return Err(HeadError::BadHost);
    }

    let framing = request_framing(&headers, version)?;
    let mut parts = http::Request::new(()).into_parts().0;
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers = headers;
    Ok(Some(RequestHead {
        parts,
        framing,
        keep_alive,
        expect_continue,
        upgrade,
    }))
}

fn request_framing(headers: &HeaderMap, version: Version) -> Result<Framing, HeadError> {
    let te = headers.get_all(header::TRANSFER_ENCODING);
    if te.iter().next().is_some() {
        // A request with both is a smuggling attempt or a broken client: refuse it.
        if version == Version::HTTP_10 || headers.contains_key(header::CONTENT_LENGTH) {
            return Err(HeadError::BadTransferEncoding);
        }
        return if is_chunked_last(headers) {
            Ok(Framing::Chunked)
        } else {
            Err(HeadError::BadTransferEncoding)
        };
    }
    match content_length(headers)? {
        Some(0) | None => Ok(Framing::Empty),
        Some(n) => Ok(Framing::Length(n)),
    }
}

/// Whether the last transfer coding is `chunked` (and `chunked` appears only there).
fn is_chunked_last(headers: &HeaderMap) -> bool {
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
        .peekable();
    let mut last_is_chunked = false;
    while let Some(t) = codings.next() {
        let chunked = t.eq_ignore_ascii_case(b"chunked");
        if chunked && codings.peek().is_some() {
            return false;
        }
        last_is_chunked = chunked;
    }
    last_is_chunked
}

/// The Content-Length, if any; repeated values must agree.
pub(crate) fn content_length(headers: &HeaderMap) -> Result<Option<u64>, HeadError> {
    let mut found: Option<u64> = None;
    for v in headers.get_all(header::CONTENT_LENGTH) {
        for part in v.as_bytes().split(|&b| b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
                return Err(HeadError::BadContentLength);
            }
            let n = part
                .iter()
                .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
            if found.is_some_and(|f| f != n) {
                return Err(HeadError::BadContentLength);
            }
            found = Some(n);
        }
    }
    Ok(found)
}

#[derive(Default)]
pub(crate) struct ConnectionTokens {
    pub(crate) close: bool,
    pub(crate) keep_alive: bool,
    pub(crate) upgrade: bool,
}

pub(crate) fn connection_tokens(headers: &HeaderMap) -> ConnectionTokens {
    let mut t = ConnectionTokens::default();
    for v in headers.get_all(header::CONNECTION) {
        for tok in v.as_bytes().split(|&b| b == b',') {
            let tok = tok.trim_ascii();
            if tok.eq_ignore_ascii_case(b"close") {
                t.close = true;
            } else if tok.eq_ignore_ascii_case(b"keep-alive") {
                t.keep_alive = true;
            } else if tok.eq_ignore_ascii_case(b"upgrade") {
                t.upgrade = true;
            }
        }
    }
    t
}

/// Tries to parse a response head. `request_method` decides bodiless responses (HEAD).
pub(crate) fn parse_response(
    buf: &mut BytesMut,
    request_method: &Method,
    max_head_bytes: usize,
) -> Result<Option<ResponseHead>, HeadError> {
    let mut storage = uninit_headers();
    let mut res = httparse::Response::new(&mut []);
    let config = httparse::ParserConfig::default();
    let (len, n, code, minor) =
        match config.parse_response_with_uninit_headers(&mut res, buf, &mut storage) {
            Ok(httparse::Status::Complete(len)) => {
                let n = Spans::of(buf, res.headers);
                (
                    len,
                    n,
                    res.code.ok_or(HeadError::Malformed)?,
                    res.version.unwrap_or(1),
                )
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() > max_head_bytes {
                    return Err(HeadError::TooLarge);
                }
                return Ok(None);
            }
            Err(e) => return Err(map_parse_error(e, buf)),
        };
    if len > max_head_bytes {
        return Err(HeadError::TooLarge);
    }
    let head = crate::bufs::take_front(buf, len);
    let status = StatusCode::from_u16(code).map_err(|_| HeadError::Malformed)?;
    let headers = build_headers(&head, n.as_slice())?;
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let conn = connection_tokens(&headers);
    let mut keep_alive = match version {
        Version::HTTP_10 => conn.keep_alive && !conn.close,
        _ => !conn.close,
    };
    let framing = if *request_method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::Empty
    } else if headers.contains_key(header::TRANSFER_ENCODING) {
        if is_chunked_last(&headers) {
            Framing::Chunked
        } else {
            keep_alive = false;
            Framing::Close
        }
    } else {
        match content_length(&headers)? {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => {
                keep_alive = false;
                Framing::Close
            }
        }
    };
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = status;
    parts.version = version;
    parts.headers = headers;
    Ok(Some(ResponseHead {
        parts,
        framing,
        keep_alive,
    }))
}

fn put_headers(buf: &mut BytesMut, headers: &HeaderMap) {
    for (name, value) in headers {
        buf.put_slice(name.as_str().as_bytes());
        buf.put_slice(b": ");
        buf.put_slice(value.as_bytes());
        buf.put_slice(b"\r\n");
    }
}

fn put_framing(buf: &mut BytesMut, framing: Framing, always_length: bool) {
    match framing {
        Framing::Length(n) => {
            buf.put_slice(b"content-length: ");
            let mut itoa = [0u8; 20];
            buf.put_slice(format_u64(n, &mut itoa));
            buf.put_slice(b"\r\n");
        }
        Framing::Empty if always_length => buf.put_slice(b"content-length: 0\r\n"),
        Framing::Chunked => buf.put_slice(b"transfer-encoding: chunked\r\n"),
        Framing::Empty | Framing::Close => {}
    }
}

pub(crate) fn format_u64(mut n: u64, out: &mut [u8; 20]) -> &[u8] {
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &out[i..];
        }
    }
}

/// Appends a request head. Framing headers in `headers` must already be removed.
pub(crate) fn encode_request(
    buf: &mut BytesMut,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    framing: Framing,
) {
    buf.reserve(256);
    buf.put_slice(method.as_str().as_bytes());
    buf.put_u8(b' ');
    buf.put_slice(target.as_bytes());
    buf.put_slice(b" HTTP/1.1\r\n");
    put_headers(buf, headers);
    let always_length = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
    put_framing(buf, framing, always_length);
    buf.put_slice(b"\r\n");
}

/// Appends a response head. Framing headers in `headers` must already be removed;
/// `connection_close` adds `connection: close`.
pub(crate) fn encode_response(
    buf: &mut BytesMut,
    status: StatusCode,
    headers: &HeaderMap,
    framing: Framing,
    connection_close: bool,
) {
    buf.reserve(256);
    buf.put_slice(b"HTTP/1.1 ");
    buf.put_slice(status.as_str().as_bytes());
    buf.put_u8(b' ');
    buf.put_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    buf.put_slice(b"\r\n");
    put_headers(buf, headers);
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if !bodiless {
        put_framing(buf, framing, true);
    }
    if connection_close {
        buf.put_slice(b"connection: close\r\n");
    }
    buf.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests;
