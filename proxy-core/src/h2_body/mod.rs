//! The two halves of an HTTP/2 stream's body, shared by the downstream server and the
//! upstream client, both on the `h2` crate: [`RecvBody`] reads one, [`pump`] sends one.

mod recv;
mod send;

pub(crate) use self::{recv::RecvBody, send::pump};

/// Whether a field value starts or ends with white space, which RFC 9113 8.2.1
/// does not allow in an HTTP/2 field value (`h2` lets it through).
pub(crate) fn padded(value: &http::HeaderValue) -> bool {
    let v = value.as_bytes();
    let white = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    white(v.first()) || white(v.last())
}
