//! The two halves of an HTTP/2 stream's body, shared by the downstream server and the
//! upstream client, both on the `h2` crate: [`RecvBody`] reads one, [`pump`] sends one;
//! and the head rules both sides apply.

mod recv;
mod send;

pub(crate) use self::{recv::RecvBody, send::pump};

use http::{header, HeaderMap, HeaderName};

/// Fields of HTTP/1.1 connections that HTTP/2 forbids (RFC 9113, 8.2.2), but for `te`,
/// which a request may send as `te: trailers`.
pub(crate) const CONNECTION_FIELDS: [HeaderName; 5] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes [`CONNECTION_FIELDS`], and a `te` other than `trailers`.
pub(crate) fn strip_connection_fields(headers: &mut HeaderMap) {
    for name in &CONNECTION_FIELDS {
        headers.remove(name);
    }
    if headers
        .get(header::TE)
        .is_some_and(|te| te.as_bytes() != b"trailers")
    {
        headers.remove(header::TE);
    }
}

/// The length a head announces (`content-length`), for its body's size.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Whether a field value starts or ends with white space, which RFC 9113 8.2.1
/// does not allow in an HTTP/2 field value (`h2` lets it through).
pub(crate) fn padded(value: &http::HeaderValue) -> bool {
    let v = value.as_bytes();
    let white = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    white(v.first()) || white(v.last())
}
