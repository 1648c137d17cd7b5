//! Parsing and encoding of HTTP/1.x message heads (request line / status line and
//! header fields), with the framing rules of RFC 9112 section 6.

use std::mem::MaybeUninit;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};

mod facts;
mod host;
mod version;

pub(crate) use host::valid_host;

use facts::{HeadFacts, Role};
use version::StartLine;

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
    #[error("missing, repeated or invalid host header")]
    BadHost,
    #[error("unsupported http version")]
    BadVersion,
    #[error("method not supported by this proxy")]
    Unsupported,
    /// A transfer coding other than `chunked` (`gzip, chunked`): this proxy re-frames
    /// every body, so it would forward the coded content without its coding.
    #[error("transfer coding other than chunked")]
    UnknownTransferCoding,
    /// The request line alone is past the head size limit.
    #[error("request target too long")]
    UriTooLong,
}

/// A parsed request head.
#[derive(Debug)]
pub(crate) struct RequestHead {
    pub(crate) parts: http::request::Parts,
    /// Whether a field name has an `_`: only then do the names need screening
    /// ([`crate::http1::names::screen`]).
    pub(crate) underscore_names: bool,
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

/// Room in a request's map for the headers a proxy adds (forwarding headers, a
/// rewritten host) without growing it. A response's map gets none: it is usually
/// passed on as it is, and a kept map that holds its fields is then reused without a
/// reallocation (the request maps an HTTP/2 client's decoder built, given back once
/// sent, hold six fields).
const SPARE_HEADERS: usize = 4;

/// The header map of a head (a recycled one, see [`super::header_maps`]) and the
/// facts framing needs of it, noted on the way. `parsed` points into the read
/// buffer, which starts at `base`; `head` is the copy of the head taken out of it,
/// which the values are slices of.
///
/// Of a response, a `Connection` field that names nothing but `close` and
/// `keep-alive` is noted but left out of the map: it names no other field, and a
/// proxy removes it anyway (with the other hop-by-hop fields), so it would only be
/// inserted to be looked up and removed again. Of a request, names with `_` are
/// noted, so that the usual request without one is not scanned again for them.
fn build_headers(
    head: &Bytes,
    base: usize,
    parsed: &[httparse::Header<'_>],
    response: bool,
) -> Result<(HeaderMap, HeadFacts), HeadError> {
    let spare = if response { 0 } else { SPARE_HEADERS };
    let mut map = super::header_maps::take(parsed.len() + spare);
    let mut facts = HeadFacts::new();
    for h in parsed {
        let raw = h.name.as_bytes();
        // The names matched by spelling have no `_`: only the others are searched.
        let (name, role, underscore) = match common_name(raw) {
            Some((name, role)) => (name, role, false),
            None => {
                let name = HeaderName::from_bytes(raw).map_err(|_| HeadError::Malformed)?;
                let role = Role::of(&name);
                (name, role, role == Role::Other && raw.contains(&b'_'))
            }
        };
        let start = h.value.as_ptr() as usize - base;
        let value = HeaderValue::from_maybe_shared(head.slice(start..start + h.value.len()))
            .map_err(|_| HeadError::Malformed)?;
        if underscore {
            if response && super::names::folds_onto_framing(raw) {
                // A lenient client could frame the answer by it (`Content_Length`).
                continue;
            }
            facts.underscore |= !response;
        }
        facts.note(role, &value);
        if response && role == Role::Connection && names_only_close_or_keep_alive(value.as_bytes())
        {
            continue;
        }
        map.append(name, value);
    }
    Ok((map, facts))
}

/// The most common field names in the two spellings peers use (capitalised and
/// lowercase), matched as they are: the same names as `HeaderName::from_bytes` gives,
/// without lowercasing them into a scratch buffer and searching the table of all
/// standard names, and with their [`Role`], so that no name is compared again to
/// note the facts of its field.
fn common_name(raw: &[u8]) -> Option<(HeaderName, Role)> {
    use http::header;
    let other = |name| Some((name, Role::Other));
    match raw {
        b"Host" | b"host" => Some((header::HOST, Role::Host)),
        b"Date" | b"date" => other(header::DATE),
        b"ETag" | b"etag" => other(header::ETAG),
        b"Vary" | b"vary" => other(header::VARY),
        b"Accept" | b"accept" => other(header::ACCEPT),
        b"Server" | b"server" => other(header::SERVER),
        b"Cookie" | b"cookie" => other(header::COOKIE),
        b"Expect" | b"expect" => Some((header::EXPECT, Role::Expect)),
        b"Upgrade" | b"upgrade" => Some((header::UPGRADE, Role::Upgrade)),
        b"Location" | b"location" => other(header::LOCATION),
        b"Connection" | b"connection" => Some((header::CONNECTION, Role::Connection)),
        b"User-Agent" | b"user-agent" => other(header::USER_AGENT),
        b"Keep-Alive" | b"keep-alive" => other(HeaderName::from_static("keep-alive")),
        b"Content-Type" | b"content-type" => other(header::CONTENT_TYPE),
        b"Cache-Control" | b"cache-control" => other(header::CACHE_CONTROL),
        b"Accept-Ranges" | b"accept-ranges" => other(header::ACCEPT_RANGES),
        b"Last-Modified" | b"last-modified" => other(header::LAST_MODIFIED),
        b"Authorization" | b"authorization" => other(header::AUTHORIZATION),
        b"Content-Length" | b"content-length" => {
            Some((header::CONTENT_LENGTH, Role::ContentLength))
        }
        b"Accept-Encoding" | b"accept-encoding" => other(header::ACCEPT_ENCODING),
        b"Accept-Language" | b"accept-language" => other(header::ACCEPT_LANGUAGE),
        b"X-Forwarded-For" | b"x-forwarded-for" => {
            other(HeaderName::from_static("x-forwarded-for"))
        }
        b"Transfer-Encoding" | b"transfer-encoding" => {
            Some((header::TRANSFER_ENCODING, Role::TransferEncoding))
        }
        _ => None,
    }
}

/// Whether every token of a `Connection` value is `close` or `keep-alive`.
fn names_only_close_or_keep_alive(value: &[u8]) -> bool {
    value.split(|&b| b == b',').all(|t| {
        let t = t.trim_ascii();
        t.is_empty() || t.eq_ignore_ascii_case(b"keep-alive") || t.eq_ignore_ascii_case(b"close")
    })
}

fn uninit_headers<'b>() -> [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS] {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

fn map_parse_error(e: httparse::Error, buf: &[u8], line: StartLine) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders => HeadError::TooManyHeaders,
        // httparse reports any request line it cannot read past the target as a version
        // error; only a well-formed `HTTP/x.y` of another major version is a 505.
        httparse::Error::Version if version::is_other_major(buf, line) => HeadError::BadVersion,
        _ => HeadError::Malformed,
    }
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
    let (head, built, method, target, minor) = match req.parse_with_uninit_headers(buf, headers) {
        Ok(httparse::Status::Complete(len)) => {
            let method = req.method.ok_or(HeadError::Malformed)?;
            let path = req.path.ok_or(HeadError::Malformed)?;
            if len > max_head_bytes {
                return Err(too_large(buf, max_head_bytes));
            }
            // Copied out, so that the read buffer goes back to the worker while the
            // request is served; the header values are slices of the copy.
            let head = crate::bufs::copy_out(&buf[..len], crate::bufs::Slab::Requests);
            let start = buf.as_ptr() as usize;
            // Header errors are reported after those of the request line, below.
            let built = build_headers(&head, start, req.headers, false);
            let m = (method.as_ptr() as usize - start, method.len());
            let p = (path.as_ptr() as usize - start, path.len());
            (head, built, m, p, req.version.unwrap_or(1))
        }
        Ok(httparse::Status::Partial) => {
            if buf.len() > max_head_bytes {
                return Err(too_large(buf, max_head_bytes));
            }
            return Ok(None);
        }
        Err(httparse::Error::Version) if version::settle_later_minor(buf, StartLine::Request) => {
            return parse_request(buf, max_headers, max_head_bytes);
        }
        Err(e) => return Err(map_parse_error(e, buf, StartLine::Request)),
    };
    buf.advance(head.len());
    let method = Method::from_bytes(&head[method.0..method.0 + method.1])
        .map_err(|_| HeadError::Malformed)?;
    let uri = Uri::from_maybe_shared(head.slice(target.0..target.0 + target.1))
        .map_err(|_| HeadError::Malformed)?;
    // CONNECT tunnels are not offered (a TCP proxy listener does that job).
    if method == Method::CONNECT {
        return Err(HeadError::Unsupported);
    }
    check_target(&method, &uri)?;
    let (headers, facts) = built?;
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };

    let conn = &facts.connection;
    let keep_alive = match version {
        Version::HTTP_10 => conn.keep_alive && !conn.close,
        _ => !conn.close,
    };
    let upgrade = conn.upgrade && facts.upgrade && version == Version::HTTP_11;
    let expect_continue = facts.expect_continue;
    let underscore_names = facts.underscore;

    if facts.hosts > 1 || (facts.hosts == 0 && version == Version::HTTP_11) || !facts.host_valid {
        return Err(HeadError::BadHost);
    }

    let framing = request_framing(&headers, &facts, version)?;
    let mut parts = http::Request::new(()).into_parts().0;
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers = headers;
    Ok(Some(RequestHead {
        parts,
        underscore_names,
        framing,
        keep_alive,
        expect_continue,
        upgrade,
    }))
}

/// The checks of a request target past httparse's: asterisk-form for OPTIONS only
/// (RFC 9112 3.2.4); no `\`, which no URI has and some servers read as `/`; and an
/// absolute-form authority, which becomes the `Host` sent on, held to `Host`'s own
/// grammar: a userinfo (`user@host`) or a bad port is a 400 (RFC 9110 4.2.4).
fn check_target(method: &Method, uri: &Uri) -> Result<(), HeadError> {
    if uri == "*" {
        return if *method == Method::OPTIONS {
            Ok(())
        } else {
            Err(HeadError::Malformed)
        };
    }
    let Some(path) = uri.path_and_query() else {
        return Err(HeadError::Malformed);
    };
    if path.as_str().contains('\\') {
        return Err(HeadError::Malformed);
    }
    match uri.authority() {
        Some(a) if !host::valid_host(a.as_str().as_bytes()) => Err(HeadError::BadHost),
        _ => Ok(()),
    }
}

/// The error for a head past the size limit (`max`): `UriTooLong` when its request
/// line alone is (RFC 9112 3: 414), else `TooLarge` (431).
fn too_large(buf: &[u8], max: usize) -> HeadError {
    match buf.iter().position(|&b| b == b'\n') {
        Some(end) if end < max => HeadError::TooLarge,
        _ => HeadError::UriTooLong,
    }
}

fn request_framing(
    headers: &HeaderMap,
    facts: &HeadFacts,
    version: Version,
) -> Result<Framing, HeadError> {
    if facts.transfer_encoding {
        // A request with both is a smuggling attempt or a broken client: refuse it.
        if version == Version::HTTP_10 || headers.contains_key(http::header::CONTENT_LENGTH) {
            return Err(HeadError::BadTransferEncoding);
        }
        return match transfer_codings(headers) {
            Codings::Chunked => Ok(Framing::Chunked),
            Codings::OthersThenChunked => Err(HeadError::UnknownTransferCoding),
            // The body's length cannot be known (RFC 9112, section 6.3).
            Codings::ChunkedNotLast => Err(HeadError::BadTransferEncoding),
        };
    }
    match facts.content_length? {
        Some(0) | None => Ok(Framing::Empty),
        Some(n) => Ok(Framing::Length(n)),
    }
}

/// What the `Transfer-Encoding` fields of a head say, for framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codings {
    /// `chunked` alone, once.
    Chunked,
    /// Other codings, then `chunked` last, once.
    OthersThenChunked,
    /// No `chunked` last, or `chunked` more than once, or no coding at all.
    ChunkedNotLast,
}

/// Reads the transfer codings of `headers`, over all their `Transfer-Encoding` fields.
fn transfer_codings(headers: &HeaderMap) -> Codings {
    let mut codings = headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
        .peekable();
    let mut others = false;
    while let Some(t) = codings.next() {
        let chunked = t.eq_ignore_ascii_case(b"chunked");
        if codings.peek().is_none() {
            return match (chunked, others) {
                (true, false) => Codings::Chunked,
                (true, true) => Codings::OthersThenChunked,
                (false, _) => Codings::ChunkedNotLast,
            };
        }
        if chunked {
            return Codings::ChunkedNotLast;
        }
        others = true;
    }
    Codings::ChunkedNotLast
}

/// Tries to parse a response head. `request_method` decides bodiless responses (HEAD).
/// A `Connection` field naming only `close` or `keep-alive` decides keep-alive but is
/// not in the parsed map (see [`build_headers`]); one naming anything else is. The head
/// is copied out of `buf` to `head_slab` (see [`crate::bufs::Slab::for_answer_head`]).
pub(crate) fn parse_response(
    buf: &mut BytesMut,
    request_method: &Method,
    max_head_bytes: usize,
    head_slab: crate::bufs::Slab,
) -> Result<Option<ResponseHead>, HeadError> {
    let mut storage = uninit_headers();
    let mut res = httparse::Response::new(&mut []);
    let config = httparse::ParserConfig::default();
    let (len, headers, facts, code, minor) =
        match config.parse_response_with_uninit_headers(&mut res, buf, &mut storage) {
            Ok(httparse::Status::Complete(len)) => {
                let code = res.code.ok_or(HeadError::Malformed)?;
                if len > max_head_bytes {
                    return Err(HeadError::TooLarge);
                }
                // Copied out, so that the read buffer can go back to the worker.
                let head = crate::bufs::copy_out(&buf[..len], head_slab);
                let (headers, facts) =
                    build_headers(&head, buf.as_ptr() as usize, res.headers, true)?;
                (len, headers, facts, code, res.version.unwrap_or(1))
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() > max_head_bytes {
                    return Err(HeadError::TooLarge);
                }
                return Ok(None);
            }
            Err(httparse::Error::Version)
                if version::settle_later_minor(buf, StartLine::Status) =>
            {
                return parse_response(buf, request_method, max_head_bytes, head_slab);
            }
            Err(e) => return Err(map_parse_error(e, buf, StartLine::Status)),
        };
    buf.advance(len);
    let status = StatusCode::from_u16(code).map_err(|_| HeadError::Malformed)?;
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let conn = &facts.connection;
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
    } else if facts.transfer_encoding {
        // RFC 9112 6.1: an HTTP/1.0 message with `Transfer-Encoding` has faulty
        // framing, whatever else it says.
        if version == Version::HTTP_10 {
            return Err(HeadError::BadTransferEncoding);
        }
        // RFC 9112 6.3: both fields may be an attempt to desynchronise; the body is
        // read as chunked, and the connection is not used again.
        if headers.contains_key(http::header::CONTENT_LENGTH) {
            keep_alive = false;
        }
        // Only `chunked` can be forwarded: the body is re-framed for the client, and
        // any other coding would reach it without its name (nor can HTTP/2 carry one).
        match transfer_codings(&headers) {
            Codings::Chunked => Framing::Chunked,
            Codings::OthersThenChunked | Codings::ChunkedNotLast => {
                return Err(HeadError::UnknownTransferCoding)
            }
        }
    } else {
        match facts.content_length? {
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
        put_header(buf, name, value);
    }
}

/// Puts the fields of `headers` but its framing ones: `Transfer-Encoding`, and
/// `Content-Length` unless `keep_length`.
fn put_headers_reframed(buf: &mut BytesMut, headers: &HeaderMap, keep_length: bool) {
    for (name, value) in headers {
        if *name == http::header::TRANSFER_ENCODING
            || (!keep_length && *name == http::header::CONTENT_LENGTH)
        {
            continue;
        }
        put_header(buf, name, value);
    }
}

/// Puts a request's fields but its framing ones (`Content-Length`,
/// `Transfer-Encoding`) and `Expect`, with every `Cookie` field on one line.
///
/// HTTP/2 and HTTP/3 clients send each cookie as a field of its own, and an HTTP/1.1
/// request may carry one `Cookie` line only (RFC 6265 5.4), so the values are joined
/// with `; ` as RFC 9113 8.2.3 and RFC 9114 4.2.1 require. Empty values are left out.
fn put_request_headers(buf: &mut BytesMut, headers: &HeaderMap) {
    let mut cookie_line_open = false;
    for (name, value) in headers {
        if *name == http::header::COOKIE {
            if value.is_empty() {
                continue;
            }
            if cookie_line_open {
                // The values of one name come one after another: reopen the line.
                buf.truncate(buf.len() - 2);
                buf.put_slice(b"; ");
                buf.put_slice(value.as_bytes());
                buf.put_slice(b"\r\n");
                continue;
            }
            cookie_line_open = true;
        } else if *name == http::header::TRANSFER_ENCODING
            || *name == http::header::CONTENT_LENGTH
            || *name == http::header::EXPECT
        {
            continue;
        }
        put_header(buf, name, value);
    }
}

#[inline]
fn put_header(buf: &mut BytesMut, name: &HeaderName, value: &HeaderValue) {
    buf.put_slice(name.as_str().as_bytes());
    buf.put_slice(b": ");
    buf.put_slice(value.as_bytes());
    buf.put_slice(b"\r\n");
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

/// Appends a request head framed as `framing`. The framing fields of `headers`
/// (`Content-Length`, `Transfer-Encoding`) and `Expect` (the proxy answers it itself)
/// are not written.
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
    put_request_headers(buf, headers);
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
    put_status_line(buf, status);
    put_headers(buf, headers);
    put_response_end(buf, status, framing, connection_close);
}

/// [`encode_response`] for a response whose `headers` may still hold framing fields:
/// `Transfer-Encoding` is not written, nor `Content-Length` unless `keep_length` (the
/// answer to HEAD, whose length passes through); `framing` is written instead.
pub(crate) fn encode_response_reframed(
    buf: &mut BytesMut,
    status: StatusCode,
    headers: &HeaderMap,
    framing: Framing,
    connection_close: bool,
    keep_length: bool,
) {
    put_status_line(buf, status);
    put_headers_reframed(buf, headers, keep_length);
    put_response_end(buf, status, framing, connection_close);
}

fn put_status_line(buf: &mut BytesMut, status: StatusCode) {
    buf.reserve(256);
    buf.put_slice(b"HTTP/1.1 ");
    buf.put_slice(status.as_str().as_bytes());
    buf.put_u8(b' ');
    buf.put_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    buf.put_slice(b"\r\n");
}

fn put_response_end(
    buf: &mut BytesMut,
    status: StatusCode,
    framing: Framing,
    connection_close: bool,
) {
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
