//! Decoding the frames real third-party peers wrote (tests/fixtures, captured from
//! sofa-rpc-node, sofa-bolt-node, dubbo2.js and js-remoting-for-apache-dubbo), their
//! mapping onto `http::Request`/`Response`, and re-encoding byte for byte.
#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use proxy_codec::{
    bolt::{self, BoltRequestInfo, BoltResponseInfo, BoltVersion},
    dubbo::{self, DubboRequestInfo, DubboResponseInfo},
    sniff::{detect, Detected, Detection},
    Bolt, Dubbo, FrameKind, Protocol, RpcInfo,
};

fn fixture(name: &str) -> Bytes {
    let path = format!("{}/tests/fixtures/{name}.bin", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

/// Decodes a fixture, checks its length from the fixed header and that re-encoding
/// gives the same bytes.
fn decode_exact<P: Protocol>(p: &P, name: &str) -> P::Frame
where
    P::Frame: PartialEq,
{
    let wire = fixture(name);
    for cut in [0, 1, wire.len() / 2, wire.len() - 1] {
        if let Some(n) = p.frame_length(&wire[..cut]).unwrap() {
            assert!(n > cut as u64, "{name}: cut at {cut} claimed complete");
        }
    }
    assert_eq!(
        p.frame_length(&wire).unwrap(),
        Some(wire.len() as u64),
        "{name}"
    );
    let frame = p.decode(wire.clone()).unwrap();
    let mut again = BytesMut::new();
    p.encode(&frame, &mut again).unwrap();
    assert_eq!(&again[..], &wire[..], "{name}: re-encoding differs");
    frame
}

async fn body(b: proxy_core::Body) -> Bytes {
    b.collect().await.unwrap().to_bytes()
}

#[test]
fn sniffer_names_every_fixture() {
    for name in [
        "bolt_v1_request",
        "bolt_v2_request",
        "bolt_v2_crc_heartbeat",
        "bolt_v1_oneway_request",
    ] {
        assert_eq!(
            detect(&fixture(name)),
            Detection::Found(Detected::Bolt),
            "{name}"
        );
    }
    for name in [
        "dubbo_request",
        "dubbo_heartbeat_request",
        "dubbo_oneway_request",
    ] {
        assert_eq!(
            detect(&fixture(name)),
            Detection::Found(Detected::Dubbo),
            "{name}"
        );
    }
}

#[tokio::test]
async fn bolt_requests_of_every_version_map_to_service_and_method() {
    for (name, version) in [
        ("bolt_v1_request", BoltVersion::V1),
        (
            "bolt_v2_request",
            BoltVersion::V2 {
                version: 2,
                switch: 0,
            },
        ),
        (
            "bolt_v2_crc_request",
            BoltVersion::V2 {
                version: 2,
                switch: 1,
            },
        ),
    ] {
        let f = decode_exact(&Bolt, name);
        assert_eq!(f.version, version, "{name}");
        assert_eq!(Bolt.kind(&f), FrameKind::Request);
        assert_eq!(f.request_id, 1);
        let content = f.content.clone();
        let req = Bolt.request_to_http(f).unwrap();
        assert_eq!(
            req.uri().path(),
            "/com.example.EchoService:1.0/echoAfter",
            "{name}"
        );
        assert_eq!(req.headers()["service"], "com.example.EchoService:1.0");
        let info = req.extensions().get::<BoltRequestInfo>().unwrap().clone();
        assert_eq!(info.version, version);
        assert_eq!(info.request_id, 1);
        assert_eq!(&info.class_name[..], bolt::SOFA_REQUEST.as_bytes());
        let rpc = req.extensions().get::<RpcInfo>().unwrap();
        assert_eq!(
            (&*rpc.service, &*rpc.method),
            ("com.example.EchoService:1.0", "echoAfter")
        );
        // Upstream again: the same frame but for the id the connection assigns.
        let (parts, b) = req.into_parts();
        let b = body(b).await;
        assert_eq!(b, content, "payload passed through unchanged");
        let mut up = Bolt.request_from_http(parts, b).unwrap();
        Bolt.set_request_id(&mut up, 1);
        let mut wire = BytesMut::new();
        Bolt.encode(&up, &mut wire).unwrap();
        assert_eq!(
            &wire[..],
            &fixture(name)[..],
            "{name}: proxied frame differs"
        );
    }
}

#[tokio::test]
async fn bolt_responses_map_status_both_ways() {
    for name in [
        "bolt_v1_response",
        "bolt_v2_response",
        "bolt_v2_crc_response",
        "bolt_v1_response_unknown_service",
    ] {
        let f = decode_exact(&Bolt, name);
        assert_eq!(Bolt.kind(&f), FrameKind::Response);
        let wire_status = f.status;
        let req_meta = proxy_codec::bolt::BoltMeta {
            version: f.version,
            request_id: f.request_id,
            codec: f.codec,
            ver2: f.ver2,
        };
        let resp = Bolt.response_to_http(f);
        assert_eq!(resp.status(), bolt::status::to_http(wire_status));
        assert_eq!(
            resp.extensions().get::<BoltResponseInfo>().unwrap().status,
            wire_status
        );
        let (parts, b) = resp.into_parts();
        let b = body(b).await;
        let back = Bolt.response_from_http(&req_meta, parts, b);
        let mut wire = BytesMut::new();
        Bolt.encode(&back, &mut wire).unwrap();
        assert_eq!(
            &wire[..],
            &fixture(name)[..],
            "{name}: proxied response differs"
        );
    }
    let err = decode_exact(&Bolt, "bolt_v1_response_unknown_service");
    assert_eq!(err.status, bolt::status::SERVER_EXCEPTION);
}

#[test]
fn bolt_heartbeats_and_one_way() {
    for (ping, ack) in [
        ("bolt_v1_heartbeat", "bolt_v1_heartbeat_ack"),
        ("bolt_v2_heartbeat", "bolt_v2_heartbeat_ack"),
        ("bolt_v2_crc_heartbeat", "bolt_v2_crc_heartbeat_ack"),
    ] {
        let p = decode_exact(&Bolt, ping);
        assert_eq!(Bolt.kind(&p), FrameKind::Heartbeat);
        let a = decode_exact(&Bolt, ack);
        assert_eq!(Bolt.kind(&a), FrameKind::HeartbeatReply);
        let ours = Bolt.heartbeat_reply(&p);
        let mut wire = BytesMut::new();
        Bolt.encode(&ours, &mut wire).unwrap();
        assert_eq!(
            &wire[..],
            &fixture(ack)[..],
            "our answer to {ping} differs from the real one"
        );
    }
    for name in ["bolt_v1_oneway_request", "bolt_v2_crc_oneway_request"] {
        let f = decode_exact(&Bolt, name);
        assert_eq!(Bolt.kind(&f), FrameKind::OneWay);
        assert_eq!(f.request_id, 100_000_000);
        let req = Bolt.request_to_http(f).unwrap();
        assert_eq!(req.uri().path(), "/com.example.EchoService:1.0/echo");
    }
}

#[test]
fn bolt_crc_mismatch_is_refused() {
    let mut wire = BytesMut::from(&fixture("bolt_v2_crc_request")[..]);
    let n = wire.len();
    wire[n - 10] ^= 0x55;
    assert!(matches!(
        Bolt.decode(wire.freeze()),
        Err(proxy_codec::DecodeError::Checksum)
    ));
}

#[tokio::test]
async fn dubbo_request_maps_body_fields_and_attachments() {
    let f = decode_exact(&Dubbo, "dubbo_request");
    assert_eq!(Dubbo.kind(&f), FrameKind::Request);
    let wire_body = f.body.clone();
    let req = Dubbo.request_to_http(f).unwrap();
    assert_eq!(req.uri().path(), "/com.example.EchoService/echoAfter");
    assert_eq!(req.headers()["path"], "com.example.EchoService");
    assert_eq!(req.headers()["application"], "dubbo2.js");
    assert_eq!(req.headers()["version"], "1.0");
    let info = req.extensions().get::<DubboRequestInfo>().unwrap().clone();
    assert_eq!(info.dubbo_version, "2.0.2");
    assert_eq!(info.service_version, "1.0");
    assert_eq!(info.parameter_types, "Ljava/lang/String;I");
    assert_eq!(
        info.timeout_ms, None,
        "dubbo2.js sends its timeout as a number"
    );
    let (parts, b) = req.into_parts();
    let b = body(b).await;
    assert_eq!(b, wire_body);
    let mut up = Dubbo.request_from_http(parts, b).unwrap();
    Dubbo.set_request_id(&mut up, 1);
    let mut wire = BytesMut::new();
    Dubbo.encode(&up, &mut wire).unwrap();
    assert_eq!(&wire[..], &fixture("dubbo_request")[..]);

    let one_way = decode_exact(&Dubbo, "dubbo_oneway_request");
    assert_eq!(Dubbo.kind(&one_way), FrameKind::OneWay);
    assert_eq!(
        Dubbo.request_to_http(one_way).unwrap().uri().path(),
        "/com.example.EchoService/echo"
    );
}

#[tokio::test]
async fn dubbo_responses_heartbeats_and_errors() {
    for name in ["dubbo_response", "dubbo_response_unknown_service"] {
        let f = decode_exact(&Dubbo, name);
        assert_eq!(Dubbo.kind(&f), FrameKind::Response);
        let status = f.status;
        let meta = dubbo::DubboMeta {
            request_id: f.request_id,
            serialization: f.serialization(),
        };
        let resp = Dubbo.response_to_http(f);
        assert_eq!(
            resp.extensions().get::<DubboResponseInfo>().unwrap().status,
            status
        );
        let (parts, b) = resp.into_parts();
        let back = Dubbo.response_from_http(&meta, parts, body(b).await);
        let mut wire = BytesMut::new();
        Dubbo.encode(&back, &mut wire).unwrap();
        assert_eq!(&wire[..], &fixture(name)[..], "{name}");
    }
    let ping = decode_exact(&Dubbo, "dubbo_heartbeat_request");
    assert_eq!(Dubbo.kind(&ping), FrameKind::Heartbeat);
    let pong = Dubbo.heartbeat_reply(&ping);
    let mut wire = BytesMut::new();
    Dubbo.encode(&pong, &mut wire).unwrap();
    assert_eq!(&wire[..], &fixture("dubbo_heartbeat_response")[..]);
    assert_eq!(
        Dubbo.kind(&decode_exact(&Dubbo, "dubbo_heartbeat_response")),
        FrameKind::HeartbeatReply
    );
}

#[test]
fn proxy_failures_answer_in_protocol_terms() {
    use http::StatusCode;
    use proxy_codec::Failure;
    let ping = Bolt.decode(fixture("bolt_v1_request")).unwrap();
    let meta = Bolt.request_meta(&ping);
    for (reason, status, want) in [
        (
            "no_route",
            StatusCode::NOT_FOUND,
            bolt::status::NO_PROCESSOR,
        ),
        (
            "connect_failure",
            StatusCode::SERVICE_UNAVAILABLE,
            bolt::status::CLIENT_SEND_ERROR,
        ),
        (
            "upstream_timeout",
            StatusCode::GATEWAY_TIMEOUT,
            bolt::status::TIMEOUT,
        ),
        (
            "overflow",
            StatusCode::SERVICE_UNAVAILABLE,
            bolt::status::SERVER_THREADPOOL_BUSY,
        ),
    ] {
        let f = Bolt.error_reply(
            &meta,
            &Failure {
                reason,
                status,
                message: "m",
            },
        );
        assert_eq!(
            (f.status, f.request_id, f.version),
            (want, 1, BoltVersion::V1)
        );
    }
    let req = Dubbo.decode(fixture("dubbo_request")).unwrap();
    let meta = Dubbo.request_meta(&req);
    for (reason, status, want) in [
        (
            "no_route",
            StatusCode::NOT_FOUND,
            dubbo::status::SERVICE_NOT_FOUND,
        ),
        (
            "upstream_timeout",
            StatusCode::GATEWAY_TIMEOUT,
            dubbo::status::SERVER_TIMEOUT,
        ),
        (
            "overflow",
            StatusCode::SERVICE_UNAVAILABLE,
            dubbo::status::SERVER_THREADPOOL_EXHAUSTED_ERROR,
        ),
        (
            "bad_request",
            StatusCode::BAD_REQUEST,
            dubbo::status::BAD_REQUEST,
        ),
        (
            "connect_failure",
            StatusCode::SERVICE_UNAVAILABLE,
            dubbo::status::SERVER_ERROR,
        ),
    ] {
        let f = Dubbo.error_reply(
            &meta,
            &Failure {
                reason,
                status,
                message: "no provider",
            },
        );
        assert_eq!((f.status, f.request_id, f.flags), (want, 1, 2));
        let mut r = proxy_codec::hessian2::Reader::new(&f.body);
        assert_eq!(r.read_string().unwrap().as_deref(), Some("no provider"));
    }
}

#[tokio::test]
async fn dubbo_header_changes_reach_the_attachments() {
    let f = decode_exact(&Dubbo, "dubbo_request");
    let original = f.body.clone();
    let mut req = Dubbo.request_to_http(f).unwrap();
    // What a header filter would do, and what core adds for HTTP upstreams.
    req.headers_mut()
        .insert("x-tenant", "gold".parse().unwrap());
    req.headers_mut()
        .insert("application", "via-proxy".parse().unwrap());
    req.headers_mut()
        .insert("x-forwarded-for", "127.0.0.1".parse().unwrap());
    let (parts, b) = req.into_parts();
    let up = Dubbo.request_from_http(parts, body(b).await).unwrap();
    let inv = Dubbo::parse_invocation(&up.body).unwrap();
    assert_eq!(inv.method, "echoAfter");
    // The arguments are untouched: the body up to the attachments is the original.
    assert_eq!(
        &up.body[..inv.attachments_at],
        &original[..inv.attachments_at]
    );
    let get = |k: &str| {
        inv.attachments
            .iter()
            .find(|(n, _)| n == k)
            .and_then(|(_, v)| v.clone())
    };
    assert_eq!(get("x-tenant").as_deref(), Some("gold"));
    assert_eq!(get("application").as_deref(), Some("via-proxy"));
    assert_eq!(get("path").as_deref(), Some("com.example.EchoService"));
    assert_eq!(
        get("x-forwarded-for"),
        None,
        "the proxy's own headers stay out"
    );
    // dubbo2.js sends `timeout` as an int: kept as it was.
    assert_eq!(inv.other_attachments.len(), 1);
    let mut r = proxy_codec::hessian2::Reader::new(&inv.other_attachments[0]);
    assert_eq!(r.read_string().unwrap().as_deref(), Some("timeout"));
}

/// The header map of a Bolt frame as (key, value) text pairs, in order.
fn header_entries(map: Bytes) -> Vec<(String, String)> {
    Bolt::parse_header_map(map)
        .unwrap()
        .into_iter()
        .map(|(k, v)| {
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            (text(&k), v.as_deref().map(text).unwrap_or_default())
        })
        .collect()
}

#[test]
fn a_repeated_http_field_goes_into_a_bolt_map_as_one_entry() {
    // A request from HTTP: a map keeps one value per key, so the values are joined.
    let req = http::Request::post("/com.example.Orders:1.0/place")
        .header("x-tag", "a")
        .header("cookie", "s=1")
        .header("x-tag", "b")
        .header("cookie", "t=2")
        .header("x-one", "only")
        .body(())
        .unwrap();
    let call = Bolt
        .request_from_http(req.into_parts().0, Bytes::from_static(b"{}"))
        .unwrap();
    let entries = header_entries(call.header);
    let get = |key: &str| -> Vec<&str> {
        entries
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(get("x-tag"), ["a, b"], "{entries:?}");
    assert_eq!(get("cookie"), ["s=1; t=2"], "{entries:?}");
    assert_eq!(get("x-one"), ["only"]);
    assert_eq!(get("sofa_head_method_name"), ["place"]);
    // An answer from HTTP: the same, but for Set-Cookie, which cannot be joined.
    let resp = http::Response::builder()
        .header("set-cookie", "a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT")
        .header("x-tag", "a")
        .header("set-cookie", "b=2")
        .header("x-tag", "b")
        .body(())
        .unwrap();
    let meta = proxy_codec::bolt::BoltMeta {
        version: bolt::BoltVersion::V1,
        request_id: 7,
        codec: 1,
        ver2: 1,
    };
    let answer = Bolt.response_from_http(&meta, resp.into_parts().0, Bytes::new());
    let entries = header_entries(answer.header);
    assert_eq!(
        entries,
        [
            (
                "set-cookie".to_owned(),
                "a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT".to_owned()
            ),
            ("set-cookie".to_owned(), "b=2".to_owned()),
            ("x-tag".to_owned(), "a, b".to_owned()),
        ]
    );
}
