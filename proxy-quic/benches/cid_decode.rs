//! Connection ID decode at the load balancer, per mode: plaintext, single pass
//! (server ID + nonce = 16 octets, one AES block) and four pass (any other length).
//! Each iteration is one `Decoder::decode` of a routable connection ID.

// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use proxy_quic::{CidFormat, CidKey, ConfigId, Decoder, Nonce, ServerId};

/// A decoder of one format and a connection ID it routes.
fn setup(sid_len: usize, nonce_len: usize, key: Option<&CidKey>) -> (Decoder, Vec<u8>) {
    let config = ConfigId::new(0).expect("config id");
    let format = CidFormat::new(config, sid_len, nonce_len, key, true).expect("format");
    let sid = ServerId::new(&[0x5a; 15][..sid_len]).expect("server id");
    let nonce = Nonce::new(&[0x3c; 18][..nonce_len]).expect("nonce");
    let cid = format.encode(&sid, &nonce, 0).expect("encode");
    let mut decoder = Decoder::new();
    decoder.insert(format);
    assert_eq!(decoder.server_id(cid.as_bytes()), Some(sid));
    (decoder, cid.as_bytes().to_vec())
}

fn decode(c: &mut Criterion) {
    let key = CidKey::new([0x8f; 16]);
    let cases = [
        ("plaintext_3_4", setup(3, 4, None)),
        ("single_pass_3_13", setup(3, 13, Some(&key))),
        ("four_pass_3_4", setup(3, 4, Some(&key))),
        ("four_pass_8_10", setup(8, 10, Some(&key))),
    ];
    let mut group = c.benchmark_group("cid_decode");
    group.throughput(Throughput::Elements(1));
    for (name, (decoder, cid)) in &cases {
        group.bench_function(*name, |b| b.iter(|| decoder.decode(black_box(cid))));
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
