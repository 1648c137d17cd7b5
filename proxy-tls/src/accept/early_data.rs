//! 0-RTT policy: which early data may be served.
//!
//! # What is guaranteed
//!
//! Early data is off by default. When the `early_data` section is present:
//! - it is accepted only on a resumed TLS 1.3 session whose ticket is single-use:
//!   stateless tickets are switched off and resumption state lives in the listener's
//!   in-process session cache, from which rustls *takes* the entry on use. A replayed
//!   ClientHello finds no entry, falls back to a full handshake and its early data is
//!   rejected. The guarantee holds per proxy process (every worker shares the cache);
//!   a replay to another proxy instance is not detected;
//! - the early bytes must be whole or partial HTTP/1.1 requests with a safe, idempotent
//!   method (`GET`, `HEAD`, `OPTIONS`) and no request body. Anything else (another
//!   method, a body, HTTP/2 frames, bytes that do not parse) is refused: an HTTP/1.1
//!   client gets `425 Too Early` (RFC 8470) and the connection closes, so the client
//!   retries after a full handshake; other bytes just close the connection.
//!
//! rustls hands the server early data as one byte stream, not per request, so the
//! check is over all early bytes of the connection.

/// Whether early data may be served: every request in it is a safe idempotent
/// HTTP/1.1 request without a body.
pub(crate) fn allowed(early: &[u8]) -> bool {
    let mut rest = early;
    while !rest.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(rest) {
            Ok(httparse::Status::Complete(len)) => {
                if !safe_method(req.method) || has_body(req.headers) {
                    return false;
                }
                rest = &rest[len..];
            }
            Ok(httparse::Status::Partial) => {
                // The head continues after the handshake: its method must be known
                // and safe already, and it must not announce a body so far.
                return safe_method(req.method) && !has_body(req.headers);
            }
            Err(_) => return false,
        }
    }
    true
}

fn safe_method(m: Option<&str>) -> bool {
    matches!(m, Some("GET" | "HEAD" | "OPTIONS"))
}

fn has_body(headers: &[httparse::Header<'_>]) -> bool {
    headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            || (h.name.eq_ignore_ascii_case("content-length") && h.value != b"0")
    })
}

/// Whether the early bytes look like HTTP/1.1 (to answer 425 rather than close).
pub(crate) fn looks_like_http1(early: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 0];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(early).is_ok() || matches!(req.parse(early), Err(httparse::Error::TooManyHeaders))
}

/// The response to refused early data.
pub(crate) const TOO_EARLY: &[u8] =
    b"HTTP/1.1 425 Too Early\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_bodiless_http1_requests_pass() {
        assert!(allowed(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n"));
        assert!(allowed(
            b"GET / HTTP/1.1\r\nhost: a\r\n\r\nHEAD /x HTTP/1.1\r\nhost: a\r\n\r\n"
        ));
        assert!(allowed(b"GET /partial HTTP/1.1\r\nhos"));
        assert!(!allowed(
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\n\r\nhi"
        ));
        assert!(!allowed(
            b"GET / HTTP/1.1\r\nhost: a\r\n\r\nDELETE /x HTTP/1.1\r\n\r\n"
        ));
        assert!(!allowed(
            b"GET / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
        ));
        assert!(!allowed(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        assert!(!allowed(b"GE"));
        assert!(!allowed(b"\x16\x03\x01garbage"));
    }

    #[test]
    fn http1_is_recognised_for_the_425_answer() {
        assert!(looks_like_http1(b"POST / HTTP/1.1\r\nhost: a\r\n\r\n"));
        assert!(!looks_like_http1(b"\x00\x01binary"));
    }
}
