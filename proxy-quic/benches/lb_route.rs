//! The forwarder's per-packet work without the sockets: parse the header of a
//! client datagram and route it (`parse` then `Routes::route`), for a 1-RTT packet
//! routed by connection ID (four-pass config) and for a client's Initial routed by
//! the 4-tuple hash.

// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use proxy_quic::lb::{parse, RouteBy, Routes};
use proxy_quic::{CidFormat, CidKey, ConfigId, Decoder, Nonce, ServerId};

fn route(c: &mut Criterion) {
    let key = CidKey::new([0x8f; 16]);
    let format =
        CidFormat::new(ConfigId::new(0).expect("id"), 2, 6, Some(&key), true).expect("format");
    let mut decoder = Decoder::new();
    decoder.insert(format.clone());
    let servers = (1..=16u8).map(|i| {
        (
            ServerId::new(&[0x0a, i]).expect("server id"),
            SocketAddr::from(([10, 0, 0, i], 4433)),
        )
    });
    let routes = Routes::new(decoder, servers).expect("routes");
    let sid = ServerId::new(&[0x0a, 7]).expect("server id");
    let cid = format
        .encode(&sid, &Nonce::new(&[1; 6]).expect("nonce"), 0)
        .expect("cid");

    let mut short = vec![0x41];
    short.extend_from_slice(cid.as_bytes());
    short.resize(1200, 0xab);
    let mut initial = vec![
        0xc3, 0, 0, 0, 1, 8, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0,
    ];
    initial.resize(1200, 0);

    let client: SocketAddr = "198.51.100.7:53211".parse().expect("client");
    let local: SocketAddr = "203.0.113.1:443".parse().expect("local");
    let by = |p: &[u8]| {
        routes
            .route(&parse(p).expect("parse"), client, local)
            .expect("route")
            .by
    };
    assert_eq!(by(&short), RouteBy::Cid);
    assert_ne!(by(&initial), RouteBy::Cid);

    let mut group = c.benchmark_group("lb_parse_route");
    group.throughput(Throughput::Elements(1));
    for (name, packet) in [
        ("short_header_by_cid", &short),
        ("initial_by_hash", &initial),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let header = parse(black_box(packet)).ok()?;
                routes.route(&header, black_box(client), local)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, route);
criterion_main!(benches);
