//! JSON to Bolt transformation cost per call: the JSON body checked and encoded to a
//! hessian2 `SofaRequest` and framed (`Bolt::request_from_http` + encode), then the
//! answer frame decoded and its `SofaResponse` read back into a JSON body.
#![allow(clippy::unwrap_used, missing_docs)]

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::BodyExt;
use proxy_codec::{
    bolt::{BoltFrame, BoltVersion, CMD_RESPONSE, CODEC_HESSIAN2, SOFA_RESPONSE, TYPE_RESPONSE},
    hessian2::Writer,
    transform::{ArgumentConfig, JsonToRpcConfig, JsonToRpcLayer, TargetProtocol},
    Bolt, Protocol,
};

fn layer() -> JsonToRpcLayer {
    let mut user = ArgumentConfig::new("com.example.User").named("user");
    user.fields = vec![
        ArgumentConfig::new("java.lang.String").named("name"),
        ArgumentConfig::new("int").named("age"),
        ArgumentConfig::new("java.util.List").named("tags"),
    ];
    JsonToRpcLayer::try_from(&JsonToRpcConfig {
        protocol: TargetProtocol::Bolt,
        service: "com.example.UserService".into(),
        version: Some("1.0".into()),
        group: None,
        method: "save".into(),
        arguments: vec![
            ArgumentConfig::new("java.lang.String").named("tenant"),
            user,
        ],
        dialect: Default::default(),
        max_body_bytes: None,
    })
    .unwrap()
}

/// A response frame whose `SofaResponse` carries a map of a few fields.
fn response_frame() -> Bytes {
    let mut w = Writer::new();
    w.class_def(
        SOFA_RESPONSE,
        &["isError", "errorMsg", "appResponse", "responseProps"],
    );
    w.object(0).bool(false).null();
    w.map_begin()
        .string("id")
        .long(1_234_567_890_123)
        .string("name")
        .string("ann")
        .string("tags")
        .list_begin()
        .string("a")
        .string("b")
        .list_end()
        .map_end();
    w.null();
    let frame = BoltFrame {
        version: BoltVersion::V1,
        rpc_type: TYPE_RESPONSE,
        cmd_code: CMD_RESPONSE,
        ver2: 1,
        request_id: 1,
        codec: CODEC_HESSIAN2,
        timeout: 0,
        status: 0,
        class_name: Bytes::from_static(SOFA_RESPONSE.as_bytes()),
        header: Bytes::new(),
        content: Bytes::from(w.into_bytes()),
    };
    let mut dst = BytesMut::new();
    Bolt.encode(&frame, &mut dst).unwrap();
    dst.freeze()
}

fn bench(c: &mut Criterion) {
    let layer = layer();
    let body = br#"{"tenant": "acme", "user": {"name": "ann", "age": 41, "tags": ["a", "b"]}}"#;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    c.bench_function("json_to_bolt/request", |b| {
        b.iter(|| {
            let req = layer.rpc_request(body).unwrap();
            let (parts, body) = req.into_parts();
            let body = rt.block_on(body.collect()).unwrap().to_bytes();
            let frame = Bolt.request_from_http(parts, body).unwrap();
            let mut dst = BytesMut::with_capacity(256);
            Bolt.encode(&frame, &mut dst).unwrap();
            dst
        })
    });
    let wire = response_frame();
    c.bench_function("json_to_bolt/answer", |b| {
        b.iter(|| {
            let frame = Bolt.decode(wire.clone()).unwrap();
            let (parts, body) = Bolt.response_to_http(frame).into_parts();
            let body = rt.block_on(body.collect()).unwrap().to_bytes();
            layer.json_response(&parts, &body).unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
