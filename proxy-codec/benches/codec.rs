//! Decode and encode cost per frame for Bolt and Dubbo.
#![allow(clippy::unwrap_used, missing_docs)]

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use proxy_codec::{
    bolt::{BoltFrame, BoltVersion, CMD_REQUEST, CODEC_HESSIAN2, SOFA_REQUEST, TYPE_REQUEST},
    dubbo::{DubboFrame, FLAG_REQUEST, FLAG_TWO_WAY, HESSIAN2},
    hessian2::Writer,
    Bolt, Dubbo, Protocol,
};

fn bolt_request(version: BoltVersion) -> BoltFrame {
    let mut w = Writer::new();
    w.class_def(
        SOFA_REQUEST,
        &[
            "targetAppName",
            "methodName",
            "targetServiceUniqueName",
            "requestProps",
            "methodArgSigs",
        ],
    );
    w.object(0)
        .null()
        .string("sayHello")
        .string("com.example.HelloService:1.0")
        .null();
    w.raw(&[0x71]).string("[string").string("java.lang.String");
    w.string(&"x".repeat(1024));
    BoltFrame {
        version,
        rpc_type: TYPE_REQUEST,
        cmd_code: CMD_REQUEST,
        ver2: 1,
        request_id: 1,
        codec: CODEC_HESSIAN2,
        timeout: 3000,
        status: 0,
        class_name: Bytes::from_static(SOFA_REQUEST.as_bytes()),
        header: Bolt::header_map([
            ("service", Some("com.example.HelloService:1.0")),
            (
                "sofa_head_target_service",
                Some("com.example.HelloService:1.0"),
            ),
            ("sofa_head_method_name", Some("sayHello")),
            (
                "rpc_trace_context.sofaTraceId",
                Some("0a0fe8ec1625559999999100110000"),
            ),
        ]),
        content: Bytes::from(w.into_bytes()),
    }
}

fn dubbo_request() -> DubboFrame {
    let mut w = Writer::new();
    w.string("2.0.2")
        .string("org.example.DemoService")
        .string("1.0.0")
        .string("sayHello");
    w.string("Ljava/lang/String;");
    w.string(&"x".repeat(1024));
    w.string_map([
        ("path", "org.example.DemoService"),
        ("interface", "org.example.DemoService"),
        ("version", "1.0.0"),
        ("timeout", "3000"),
    ]);
    DubboFrame {
        flags: FLAG_REQUEST | FLAG_TWO_WAY | HESSIAN2,
        status: 0,
        request_id: 1,
        body: Bytes::from(w.into_bytes()),
    }
}

fn bench<P: Protocol>(c: &mut Criterion, name: &str, p: P, frame: P::Frame) {
    let mut wire = BytesMut::new();
    p.encode(&frame, &mut wire).unwrap();
    let wire = wire.freeze();
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode", |b| b.iter(|| p.decode(wire.clone()).unwrap()));
    g.bench_function("encode", |b| {
        let mut out = BytesMut::with_capacity(wire.len() * 2);
        b.iter(|| {
            out.clear();
            p.encode(&frame, &mut out).unwrap();
        })
    });
    g.bench_function("decode_to_http", |b| {
        b.iter(|| {
            let f = p.decode(wire.clone()).unwrap();
            p.request_to_http(f).unwrap()
        })
    });
    g.finish();
}

fn codecs(c: &mut Criterion) {
    bench(c, "bolt_v1_request", Bolt, bolt_request(BoltVersion::V1));
    bench(
        c,
        "bolt_v2_crc_request",
        Bolt,
        bolt_request(BoltVersion::V2 {
            version: 2,
            switch: 1,
        }),
    );
    // As sofa-rpc-node sends it: the method only inside the hessian2 SofaRequest.
    let mut node_style = bolt_request(BoltVersion::V1);
    node_style.header = Bolt::header_map([("service", Some("com.example.HelloService:1.0"))]);
    bench(c, "bolt_v1_request_method_in_content", Bolt, node_style);
    bench(c, "dubbo_request", Dubbo, dubbo_request());
}

criterion_group!(benches, codecs);
criterion_main!(benches);
