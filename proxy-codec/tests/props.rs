//! Properties: encode then decode is the identity for every frame kind of Bolt and
//! Dubbo; no input makes a decoder, the hessian2 reader or the sniffer panic; the
//! options survive being written as YAML and read back.
#![allow(clippy::unwrap_used)]

use std::{num::NonZeroU32, time::Duration};

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use proxy_codec::{
    bolt::{self, BoltFrame, BoltVersion},
    config::{ServerOptions, UpstreamOptions},
    dubbo::{self, DubboFrame},
    hessian2::{Reader, Writer},
    sniff::detect,
    Bolt, Dubbo, FrameKind, Protocol,
};

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn bolt_version() -> impl Strategy<Value = BoltVersion> {
    prop_oneof![
        Just(BoltVersion::V1),
        (1u8..=2, any::<u8>()).prop_map(|(version, switch)| BoltVersion::V2 { version, switch }),
    ]
}

/// Every Bolt frame kind: request, one-way, response, heartbeat and its ack.
fn bolt_frame() -> impl Strategy<Value = BoltFrame> {
    (
        bolt_version(),
        prop_oneof![
            Just((bolt::TYPE_REQUEST, bolt::CMD_REQUEST)),
            Just((bolt::TYPE_ONEWAY, bolt::CMD_REQUEST)),
            Just((bolt::TYPE_RESPONSE, bolt::CMD_RESPONSE)),
            Just((bolt::TYPE_REQUEST, bolt::CMD_HEARTBEAT)),
            Just((bolt::TYPE_RESPONSE, bolt::CMD_HEARTBEAT)),
        ],
        any::<u8>(),
        any::<u32>(),
        any::<u8>(),
        any::<i32>(),
        any::<u16>(),
        (bytes(64), bytes(128), bytes(512)),
    )
        .prop_map(
            |(
                version,
                (rpc_type, cmd_code),
                ver2,
                request_id,
                codec,
                timeout,
                status,
                (class_name, header, content),
            )| {
                let response = rpc_type == bolt::TYPE_RESPONSE;
                BoltFrame {
                    version,
                    rpc_type,
                    cmd_code,
                    ver2,
                    request_id,
                    codec,
                    timeout: if response { 0 } else { timeout },
                    status: if response { status } else { 0 },
                    class_name,
                    header,
                    content,
                }
            },
        )
}

/// Every Dubbo frame kind: two-way, one-way, response, heartbeat and its answer.
fn dubbo_frame() -> impl Strategy<Value = DubboFrame> {
    (
        prop_oneof![
            Just(dubbo::FLAG_REQUEST | dubbo::FLAG_TWO_WAY),
            Just(dubbo::FLAG_REQUEST),
            Just(0),
            Just(dubbo::FLAG_REQUEST | dubbo::FLAG_TWO_WAY | dubbo::FLAG_EVENT),
            Just(dubbo::FLAG_EVENT),
        ],
        0u8..32,
        any::<u8>(),
        any::<u64>(),
        bytes(512),
    )
        .prop_map(
            |(kind, serialization, status, request_id, body)| DubboFrame {
                flags: kind | serialization,
                status,
                request_id,
                body,
            },
        )
}

fn round_trip<P: Protocol>(p: &P, f: &P::Frame) -> (P::Frame, usize)
where
    P::Frame: Clone,
{
    let mut wire = BytesMut::new();
    p.encode(f, &mut wire).unwrap();
    let n = wire.len();
    assert_eq!(p.frame_length(&wire).unwrap(), Some(n as u64));
    for cut in 0..n.min(30) {
        if let Some(len) = p.frame_length(&wire[..cut]).unwrap() {
            assert_eq!(len, n as u64);
        }
    }
    (p.decode(wire.freeze()).unwrap(), n)
}

/// A random hessian2 value tree, written with the writer.
#[derive(Debug, Clone)]
enum Value {
    Null,
    Bool(bool),
    Int(i32),
    Long(i64),
    Str(String),
    Bin(Vec<u8>),
    List(Vec<Value>),
    Map(Vec<(Value, Value)>),
    Object(Vec<Value>),
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(Value::Int),
        any::<i64>().prop_map(Value::Long),
        ".{0,40}".prop_map(Value::Str),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bin),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
            proptest::collection::vec((inner.clone(), inner.clone()), 0..4).prop_map(Value::Map),
            proptest::collection::vec(inner, 0..4).prop_map(Value::Object),
        ]
    })
}

fn write(w: &mut Writer, v: &Value, classes: &mut u32) {
    match v {
        Value::Null => drop(w.null()),
        Value::Bool(b) => drop(w.bool(*b)),
        Value::Int(i) => drop(w.int(*i)),
        Value::Long(l) => drop(w.long(*l)),
        Value::Str(s) => drop(w.string(s)),
        Value::Bin(b) => drop(w.binary(b)),
        Value::List(items) => {
            w.list_begin();
            for i in items {
                write(w, i, classes);
            }
            w.list_end();
        }
        Value::Map(entries) => {
            w.map_begin();
            for (k, v) in entries {
                write(w, k, classes);
                write(w, v, classes);
            }
            w.map_end();
        }
        Value::Object(fields) => {
            let names: Vec<String> = (0..fields.len()).map(|i| format!("f{i}")).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            w.class_def("com.example.Obj", &names);
            w.object(*classes);
            *classes += 1;
            for f in fields {
                write(w, f, classes);
            }
        }
    }
}

fn duration() -> impl Strategy<Value = Option<Duration>> {
    proptest::option::of((1u64..86_400_000_000_000).prop_map(Duration::from_nanos))
}

fn count() -> impl Strategy<Value = NonZeroU32> {
    (1u32..=u32::MAX).prop_map(|n| NonZeroU32::new(n).unwrap())
}

fn size() -> impl Strategy<Value = proxy_core::config::ByteSize> {
    (1u64..=u64::MAX).prop_map(proxy_core::config::ByteSize)
}

fn server_options() -> impl Strategy<Value = ServerOptions> {
    (size(), count(), duration(), duration()).prop_map(
        |(max_frame_bytes, max_in_flight, idle_timeout, frame_timeout)| ServerOptions {
            max_frame_bytes,
            max_in_flight,
            idle_timeout,
            frame_timeout,
        },
    )
}

fn upstream_options() -> impl Strategy<Value = UpstreamOptions> {
    (count(), size(), count(), duration(), duration()).prop_map(
        |(
            connections_per_endpoint,
            max_frame_bytes,
            max_in_flight,
            request_timeout,
            heartbeat_interval,
        )| {
            UpstreamOptions {
                connections_per_endpoint,
                max_frame_bytes,
                max_in_flight,
                request_timeout,
                heartbeat_interval,
            }
        },
    )
}

proptest! {
    #[test]
    fn server_options_round_trip_through_yaml(o in server_options()) {
        let yaml = proxy_core::config::to_yaml(&o).unwrap();
        let back: ServerOptions = proxy_core::config::from_yaml(&yaml).unwrap();
        prop_assert_eq!(&back, &o, "{}", yaml);
        prop_assert!(back.validate().is_ok());
    }

    #[test]
    fn upstream_options_round_trip_through_yaml(o in upstream_options()) {
        let yaml = proxy_core::config::to_yaml(&o).unwrap();
        let back: UpstreamOptions = proxy_core::config::from_yaml(&yaml).unwrap();
        prop_assert_eq!(&back, &o, "{}", yaml);
        prop_assert!(back.validate().is_ok());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn bolt_encode_then_decode_is_identity(f in bolt_frame()) {
        let (back, _) = round_trip(&Bolt, &f);
        prop_assert_eq!(&back, &f);
        let kind = Bolt.kind(&back);
        let want = match (f.rpc_type, f.cmd_code) {
            (bolt::TYPE_RESPONSE, bolt::CMD_HEARTBEAT) => FrameKind::HeartbeatReply,
            (bolt::TYPE_RESPONSE, _) => FrameKind::Response,
            (_, bolt::CMD_HEARTBEAT) => FrameKind::Heartbeat,
            (bolt::TYPE_ONEWAY, _) => FrameKind::OneWay,
            _ => FrameKind::Request,
        };
        prop_assert_eq!(kind, want);
    }

    #[test]
    fn dubbo_encode_then_decode_is_identity(f in dubbo_frame()) {
        let (back, n) = round_trip(&Dubbo, &f);
        prop_assert_eq!(n, 16 + f.body.len());
        prop_assert_eq!(back, f);
    }

    #[test]
    fn bolt_header_maps_survive_the_http_mapping(
        entries in proptest::collection::vec(("k[a-zA-Z0-9_.-]{0,11}", proptest::option::of("([!-~]([ -~]{0,18}[!-~])?)?")), 0..8),
        content in bytes(64),
    ) {
        let refs: Vec<(&str, Option<&str>)> = entries.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
        let f = BoltFrame {
            version: BoltVersion::V1,
            rpc_type: bolt::TYPE_REQUEST,
            cmd_code: bolt::CMD_REQUEST,
            ver2: 1,
            request_id: 1,
            codec: 11,
            timeout: 0,
            status: 0,
            class_name: Bytes::from_static(b"x"),
            header: Bolt::header_map(refs.clone()),
            content,
        };
        let req = Bolt.request_to_http(f.clone()).unwrap();
        let (parts, body) = req.into_parts();
        let body = collect(body);
        let back = Bolt.request_from_http(parts, body.clone()).unwrap();
        prop_assert_eq!(&back.content, &body);
        prop_assert_eq!(&back.class_name, &f.class_name);
        // Keys keep their spelling (case-insensitive duplicates take the first one's).
        let first_spelling = |k: &str| refs.iter().find(|(r, v)| v.is_some() && r.eq_ignore_ascii_case(k)).map_or(k, |(r, _)| r).to_owned();
        let mut got: Vec<(String, Option<String>)> = Bolt::parse_header_map(back.header).unwrap().into_iter()
            .map(|(k, v)| (String::from_utf8(k.to_vec()).unwrap(), v.map(|v| String::from_utf8(v.to_vec()).unwrap())))
            .collect();
        let mut want: Vec<(String, Option<String>)> = refs.iter()
            .map(|(k, v)| (if v.is_some() { first_spelling(k) } else { (*k).to_owned() }, v.map(str::to_owned)))
            .collect();
        got.sort();
        want.sort();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn hessian2_values_are_skipped_exactly(values in proptest::collection::vec(value(), 1..6)) {
        let mut w = Writer::new();
        let mut classes = 0;
        for v in &values {
            write(&mut w, v, &mut classes);
        }
        w.string("end");
        let b = w.into_bytes();
        let mut r = Reader::new(&b);
        for _ in &values {
            r.skip_value().unwrap();
        }
        let end = r.read_string().unwrap();
        prop_assert_eq!(end.as_deref(), Some("end"));
        prop_assert!(r.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let b = Bytes::from(data.clone());
        let _ = detect(&data);
        feed_bolt(b.clone());
        feed_dubbo(b);
        let mut r = Reader::new(&data);
        while r.skip_value().is_ok() && !r.is_empty() {}
        let mut r = Reader::draft(&data);
        while r.skip_value().is_ok() && !r.is_empty() {}
        let _ = Dubbo::parse_invocation(&data);
    }

    #[test]
    fn arbitrary_frames_with_valid_heads_never_panic(
        head in prop_oneof![Just(vec![1u8, 1, 0, 1]), Just(vec![2u8, 2, 1, 0, 1]), Just(vec![0xdau8, 0xbb, 0xc2])],
        rest in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut data = head;
        data.extend(rest);
        feed_bolt(Bytes::from(data.clone()));
        feed_dubbo(Bytes::from(data));
    }
}

/// Feeds bytes to a protocol's decoder and mapping, as a connection would.
fn feed_bolt(b: Bytes) {
    exercise(&Bolt, b);
}

fn feed_dubbo(b: Bytes) {
    exercise(&Dubbo, b);
}

fn exercise<P: Protocol>(p: &P, b: Bytes) {
    let _ = p.malformed_reply(&b, &proxy_codec::DecodeError::Malformed("x"));
    if let Ok(Some(n)) = p.frame_length(&b) {
        if n <= b.len() as u64 {
            if let Ok(f) = p.decode(b.slice(..n as usize)) {
                let kind = p.kind(&f);
                let meta = p.request_meta(&f);
                let _ = p.error_reply(
                    &meta,
                    &proxy_codec::Failure {
                        reason: "no_route",
                        status: http::StatusCode::NOT_FOUND,
                        message: "m",
                    },
                );
                match kind {
                    FrameKind::Request | FrameKind::OneWay => drop(p.request_to_http(f)),
                    FrameKind::Response => drop(p.response_to_http(f)),
                    FrameKind::Heartbeat => drop(p.heartbeat_reply(&f)),
                    FrameKind::HeartbeatReply => {}
                }
            }
        }
    }
}

fn collect(body: proxy_core::Body) -> Bytes {
    use http_body_util::BodyExt;
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(body.collect())
        .unwrap()
        .to_bytes()
}
