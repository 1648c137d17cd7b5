//! Full TLS 1.3 handshakes per second (client and server in memory, one core):
//! ECDSA P-256, RSA-2048 (needs `openssl` to make the key) and SM2 (Guomi).

#![allow(clippy::unwrap_used, missing_docs)]

mod common;
#[path = "../src/guomi/test_pki.rs"]
mod test_pki;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use proxy_tls::guomi::{GuomiClientBuilder, GuomiServerBuilder, Sm2RootStore};
use std::sync::Arc;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("tls13_full_handshake");
    g.throughput(Throughput::Elements(1));
    let ecdsa = common::ecdsa_p256();
    let (cc, sc) = (common::client_config(&ecdsa), common::server_config(&ecdsa));
    g.bench_function("ecdsa_p256", |b| b.iter(|| common::handshake(&cc, &sc)));
    match common::rsa_2048() {
        Some(rsa) => {
            let (cc, sc) = (common::client_config(&rsa), common::server_config(&rsa));
            g.bench_function("rsa_2048", |b| b.iter(|| common::handshake(&cc, &sc)));
        }
        None => eprintln!("SKIPPED: rsa_2048 (openssl not installed)"),
    }
    let ca = test_pki::issue(&test_pki::Spec::ca("Bench Root"), None);
    let leaf = test_pki::issue(
        &test_pki::Spec::leaf("a.test", &["a.test"], test_pki::SERVER_AUTH),
        Some(&ca),
    );
    let server =
        GuomiServerBuilder::from_pem(leaf.cert_pem().as_bytes(), leaf.key_pem().as_bytes())
            .unwrap()
            .build()
            .unwrap();
    let mut roots = Sm2RootStore::new();
    roots.add(&ca.der).unwrap();
    let mut client = GuomiClientBuilder::new(Arc::new(roots)).build().unwrap();
    client.resumption = rustls::client::Resumption::disabled();
    let (cc, sc) = (Arc::new(client), Arc::new(server));
    g.bench_function("sm2", |b| b.iter(|| common::handshake(&cc, &sc)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
