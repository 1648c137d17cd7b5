//! Property tests of the HTTP/1.1 codec: what we encode we parse back unchanged, and no
//! input bytes make the decoders panic.

use bytes::BytesMut;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use proptest::prelude::*;

use super::{
    decode::{Decoder, Step},
    head::{self, Framing},
    send::send_body,
};
use crate::{Body, BoxError};

fn header_name() -> impl Strategy<Value = HeaderName> {
    "x-[a-z0-9-]{1,20}".prop_map(|s| HeaderName::from_bytes(s.as_bytes()).unwrap())
}

fn header_value() -> impl Strategy<Value = HeaderValue> {
    "[!-~]([ !-~]{0,30}[!-~])?".prop_map(|s| HeaderValue::from_str(&s).unwrap())
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::GET),
        Just(Method::POST),
        Just(Method::PUT),
        Just(Method::DELETE),
        Just(Method::HEAD)
    ]
}

proptest! {
    #[test]
    fn request_head_round_trips(
        method in method(),
        path in "/[a-zA-Z0-9/._~-]{0,40}(\\?[a-z0-9=&]{0,20})?",
        headers in proptest::collection::vec((header_name(), header_value()), 0..20),
        length in proptest::option::of(1u64..1_000_000),
    ) {
        let mut map = HeaderMap::new();
        map.insert("host", HeaderValue::from_static("example.com"));
        for (n, v) in &headers {
            map.append(n.clone(), v.clone());
        }
        let framing = length.map_or(Framing::Empty, Framing::Length);
        let mut buf = BytesMut::new();
        head::encode_request(&mut buf, &method, &path, &map, framing);
        buf.extend_from_slice(b"trailing");
        let parsed = head::parse_request(&mut buf, 100, 64 * 1024).unwrap().unwrap();
        prop_assert_eq!(&parsed.parts.method, &method);
        prop_assert_eq!(parsed.parts.uri.to_string(), path);
        for (n, _) in &headers {
            let want: Vec<_> = map.get_all(n).iter().collect();
            let got: Vec<_> = parsed.parts.headers.get_all(n).iter().collect();
            prop_assert_eq!(got, want);
        }
        let expect = match (length, &method) {
            (Some(n), _) => Framing::Length(n),
            (None, _) => Framing::Empty,
        };
        prop_assert_eq!(parsed.framing, expect);
        prop_assert_eq!(&buf[..], b"trailing");
    }

    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = head::parse_request(&mut BytesMut::from(&bytes[..]), 100, 64 * 1024);
        let _ = head::parse_response(&mut BytesMut::from(&bytes[..]), &Method::GET, 64 * 1024, crate::bufs::Slab::Responses);
        let mut d = Decoder::new(Framing::Chunked);
        let mut buf = BytesMut::from(&bytes[..]);
        for _ in 0..1000 {
            match d.decode(&mut buf) {
                Ok(Step::Data(_) | Step::Trailers(_)) => {}
                _ => break,
            }
        }
    }

    #[test]
    fn chunked_body_round_trips(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 0..10),
        trailers in proptest::collection::vec((header_name(), header_value()), 0..3),
        split in 1usize..64,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut map = HeaderMap::new();
        for (n, v) in &trailers {
            map.append(n.clone(), v.clone());
        }
        let mut frames: Vec<Result<http_body::Frame<bytes::Bytes>, BoxError>> =
            chunks.iter().map(|c| Ok(http_body::Frame::data(bytes::Bytes::from(c.clone())))).collect();
        if !map.is_empty() {
            frames.push(Ok(http_body::Frame::trailers(map.clone())));
        }
        let mut body = Body::new(http_body_util::StreamBody::new(futures_util::stream::iter(frames)));
        let mut wire = Vec::new();
        rt.block_on(send_body(&mut wire, &mut BytesMut::new(), &mut body, Framing::Chunked, std::time::Duration::from_secs(5))).unwrap();

        // Decode, feeding the wire in pieces of `split` bytes.
        let mut d = Decoder::new(Framing::Chunked);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut got_trailers = HeaderMap::new();
        let mut fed = 0;
        loop {
            match d.decode(&mut buf).unwrap() {
                Step::Data(b) => out.extend_from_slice(&b),
                Step::Trailers(t) => got_trailers = t,
                Step::Done => break,
                Step::NeedMore => {
                    prop_assert!(fed < wire.len(), "decoder wants more than was sent");
                    let end = (fed + split).min(wire.len());
                    buf.extend_from_slice(&wire[fed..end]);
                    fed = end;
                }
            }
        }
        prop_assert_eq!(out, chunks.concat());
        prop_assert_eq!(got_trailers, map);
    }
}
