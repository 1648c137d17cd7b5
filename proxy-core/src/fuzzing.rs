//! Entry points for the fuzz targets in `proxy-core/fuzz`: each feeds arbitrary bytes
//! to one decoder of untrusted input. Not a stable API.

use bytes::BytesMut;
use http::Method;

use crate::{
    config::Config,
    http1::{
        decode::{Decoder, Step},
        head::{self, Framing},
    },
    snapshot::Snapshot,
    Registry,
};

/// Parses `data` as an HTTP/1.x request head (and what follows it as a body).
pub fn http1_request(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    if let Ok(Some(h)) = head::parse_request(&mut buf, 100, 64 * 1024) {
        drain_body(Decoder::new(h.framing), &mut buf);
    }
}

/// Parses `data` as an HTTP/1.x response head (and what follows it as a body).
pub fn http1_response(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    if let Ok(Some(h)) = head::parse_response(
        &mut buf,
        &Method::GET,
        64 * 1024,
        crate::bufs::Slab::Responses,
    ) {
        drain_body(Decoder::new(h.framing), &mut buf);
    }
}

/// Follows `data` as an HTTP/2 upstream's frames, as the proxy does alongside `h2`
/// for the last stream each GOAWAY names, in reads of the size its first byte says.
pub fn h2_upstream_frames(data: &[u8]) {
    crate::upstream::h2_frames::follow_in_pieces(data);
}

/// Decodes `data` as a chunked body with trailers.
pub fn http1_chunked(data: &[u8]) {
    drain_body(Decoder::new(Framing::Chunked), &mut BytesMut::from(data));
}

/// Loads `data` as a YAML config and, when it parses, validates it into a snapshot.
pub fn config_yaml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(config) = Config::from_yaml(text) {
            let _ = Snapshot::build(config, &Registry::default(), None);
        }
    }
}

fn drain_body(mut decoder: Decoder, buf: &mut BytesMut) {
    // Each step consumes input or ends, so this terminates; the bound is a backstop.
    for _ in 0..buf.len() + 2 {
        match decoder.decode(buf) {
            Ok(Step::Data(_) | Step::Trailers(_)) => {}
            Ok(Step::NeedMore) => {
                let _ = decoder.eof();
                return;
            }
            Ok(Step::Done) | Err(_) => return,
        }
    }
}
