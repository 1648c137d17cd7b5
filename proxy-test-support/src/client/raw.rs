//! Raw bytes on a socket: write what the test wrote, read what came back, for tests
//! where the wire format matters (framing, malformed input, exact heads).

use std::{io, net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};

/// How long [`request`] waits for the whole answer.
const GET_LIMIT: Duration = Duration::from_secs(10);

/// Sends `bytes` on a fresh connection and reads until the peer closes or nothing
/// more arrives for `idle`; returns what was read.
///
/// # Panics
/// When the connection or the write fails.
pub async fn exchange(addr: SocketAddr, bytes: &[u8], idle: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.write_all(bytes).await.expect("write the request bytes");
    read_idle(&mut s, idle).await
}

/// Reads until the peer closes, an error, or nothing arrives for `idle`.
pub async fn read_idle(s: &mut (impl AsyncRead + Unpin), idle: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(idle, s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

/// Sends `METHOD path` (`Host: test`, `Connection: close`, no body) with extra
/// `headers` on `stream` and reads until it closes: the whole response as text.
///
/// # Errors
/// When writing or reading fails.
pub async fn request_on(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> io::Result<String> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// [`request_on`] with `GET`.
///
/// # Errors
/// When writing or reading fails.
pub async fn get_on(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    path: &str,
    headers: &[(&str, &str)],
) -> io::Result<String> {
    request_on(stream, "GET", path, headers).await
}

/// [`request_on`] a fresh connection to `addr`, within 10 s.
///
/// # Panics
/// When the connection fails or the answer takes longer.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> String {
    let mut s = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    tokio::time::timeout(GET_LIMIT, request_on(&mut s, method, path, headers))
        .await
        .unwrap_or_else(|_| {
            panic!("{method} {path} on {addr}: no whole answer within {GET_LIMIT:?}")
        })
        .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"))
}

/// [`request`] with `GET`.
///
/// # Panics
/// When the connection fails or the answer takes longer.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> String {
    request(addr, "GET", path, headers).await
}

/// The body of a whole response as text (after the first blank line).
pub fn body_of(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// Reads from `s` into `buf` until `buf` holds `needle`; returns the index just
/// after it.
///
/// # Panics
/// When the peer closes first, or reading fails.
pub async fn read_until(
    s: &mut (impl AsyncRead + Unpin),
    buf: &mut Vec<u8>,
    needle: &[u8],
) -> usize {
    loop {
        if let Some(i) = buf.windows(needle.len()).position(|w| w == needle) {
            return i + needle.len();
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.expect("read");
        assert!(
            n > 0,
            "connection closed; got so far: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads one length-delimited frame: more bytes into `buf` until `frame_len` (given
/// the bytes so far, `None` while the length is not known yet) says a whole frame is
/// there, then takes it off the front. `None` when the peer closes (or reading
/// fails) first.
pub async fn read_frame(
    s: &mut (impl AsyncRead + Unpin),
    buf: &mut bytes::BytesMut,
    frame_len: impl Fn(&[u8]) -> Option<usize>,
) -> Option<bytes::Bytes> {
    loop {
        if let Some(n) = frame_len(buf) {
            if buf.len() >= n {
                return Some(buf.split_to(n).freeze());
            }
        }
        if s.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    }
}

/// An HTTP/1.1 response read off a raw connection, its body de-chunked.
#[derive(Debug, Clone, Default)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Whether the body came chunked.
    pub chunked: bool,
    /// Trailer fields of a chunked body, names lower-cased.
    pub trailers: Vec<(String, String)>,
}

impl RawResponse {
    /// A header's first value (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).into_iter().next()
    }

    /// Every value of a header (name case-insensitive).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        field_values(&self.headers, name)
    }

    /// A trailer's value (name case-insensitive).
    pub fn trailer(&self, name: &str) -> Option<&str> {
        field_values(&self.trailers, name).into_iter().next()
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The values of the fields named `name` (case-insensitive) among `fields`.
pub(crate) fn field_values<'a>(fields: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Reads more bytes into `buf`; an error when the peer closed.
async fn fill(s: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 8192];
    let n = s.read(&mut chunk).await?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "connection closed; unparsed so far: {:?}",
                String::from_utf8_lossy(buf)
            ),
        ));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// Reads a CRLF-terminated line at the start of `buf` (reading more as needed) and
/// removes it, without the CRLF.
async fn take_line(s: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> io::Result<String> {
    loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..i]).into_owned();
            buf.drain(..i + 2);
            return Ok(line);
        }
        fill(s, buf).await?;
    }
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Reads `name: value` lines up to a blank line, names lower-cased.
async fn take_fields(
    s: &mut (impl AsyncRead + Unpin),
    buf: &mut Vec<u8>,
) -> io::Result<Vec<(String, String)>> {
    let mut fields = Vec::new();
    loop {
        let line = take_line(s, buf).await?;
        if line.is_empty() {
            return Ok(fields);
        }
        if let Some((n, v)) = line.split_once(':') {
            fields.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
}

/// Reads one whole response (after any 1xx) from `s`; `buf` holds bytes already read
/// and keeps those read past the response. Bodies: content-length, chunked (with
/// trailers), or until close when neither is given.
///
/// # Errors
/// When the peer closes early, reading fails, or the response is malformed.
pub async fn read_response(
    s: &mut (impl AsyncRead + Unpin),
    buf: &mut Vec<u8>,
) -> io::Result<RawResponse> {
    let mut r = RawResponse::default();
    loop {
        let status_line = take_line(s, buf).await?;
        r.status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
        r.headers = take_fields(s, buf).await?;
        if !(100..200).contains(&r.status) {
            break;
        }
    }
    if r.status == 204 || r.status == 304 {
        return Ok(r);
    }
    let chunked = r
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        r.chunked = true;
        loop {
            let size_line = take_line(s, buf).await?;
            let size_hex = size_line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|e| invalid(format!("bad chunk size {size_line:?}: {e}")))?;
            if size == 0 {
                r.trailers = take_fields(s, buf).await?;
                return Ok(r);
            }
            while buf.len() < size + 2 {
                fill(s, buf).await?;
            }
            r.body.extend_from_slice(&buf[..size]);
            buf.drain(..size + 2);
        }
    }
    if let Some(len) = r.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|e| invalid(format!("bad content-length: {e}")))?;
        while buf.len() < len {
            fill(s, buf).await?;
        }
        r.body = buf.drain(..len).collect();
        return Ok(r);
    }
    // Until close.
    s.read_to_end(buf).await?;
    r.body = std::mem::take(buf);
    Ok(r)
}

/// Sends `GET path` (`Host: test`, keep-alive) on `s` and reads the response.
///
/// # Errors
/// As [`read_response`].
pub async fn keep_alive_get(
    s: &mut (impl AsyncRead + AsyncWrite + Unpin),
    buf: &mut Vec<u8>,
    path: &str,
) -> io::Result<RawResponse> {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .await?;
    read_response(s, buf).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_a_chunked_response_with_trailers_after_a_100() {
        let wire: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nX-Sum: 5\r\n\r\nnext";
        let mut s = wire;
        let mut buf = Vec::new();
        let r = read_response(&mut s, &mut buf).await.expect("a response");
        assert_eq!(r.status, 200);
        assert!(r.chunked);
        assert_eq!(r.body, b"abcde");
        assert_eq!(r.trailer("x-sum"), Some("5"));
        assert_eq!(buf, b"next");
    }

    #[tokio::test]
    async fn reads_a_length_delimited_frame() {
        let mut s: &[u8] = &[2, b'a', b'b', 1, b'c'];
        let mut buf = bytes::BytesMut::new();
        let len = |b: &[u8]| b.first().map(|n| 1 + usize::from(*n));
        let first = read_frame(&mut s, &mut buf, len).await;
        assert_eq!(first.as_deref(), Some(&[2, b'a', b'b'][..]));
        let second = read_frame(&mut s, &mut buf, len).await;
        assert_eq!(second.as_deref(), Some(&[1, b'c'][..]));
        assert!(read_frame(&mut s, &mut buf, len).await.is_none());
    }
}
