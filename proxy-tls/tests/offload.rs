//! Private-key offload through the termination layer: handshakes run their signing
//! step on the engines, a failed engine is routed around, all engines failed still
//! serves (blocking pool), the per-engine metrics reach admin
//! `/stats/prometheus`, and an engine's `thread_priority` from YAML is what its
//! threads run at.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::{sync::Arc, time::Duration};

use common::*;
use proxy_test_support::{client::raw, free_addr, pki::Pki, TestServer, Upstream};
use proxy_tls::offload::{OffloadEngine, SoftwareEngine};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn connector(ca: &std::path::Path) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in proxy_tls::material::parse_certs(&std::fs::read(ca).unwrap(), "ca").unwrap() {
        roots.add(c).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn get(c: &tokio_rustls::TlsConnector, port: u16) -> String {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut tls = c
        .connect(ServerName::try_from("a.test").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_sign_on_the_engines_and_route_around_a_failed_one() {
    let pki = Pki::new("offload");
    let srv = pki.server("srv", &["a.test"]);
    let runtime = proxy_tls::TlsRuntime::default();
    let cards: Vec<Arc<SoftwareEngine>> = (0..2)
        .map(|i| Arc::new(SoftwareEngine::new(&format!("card{i}"), 1).unwrap()))
        .collect();
    for c in &cards {
        runtime.add_engine(c.clone());
    }
    let tls = format!(
        "{{ certificates: [{{ cert: {}, key: {} }}], offload: {{ engines: [{{ name: card0 }}, {{ name: card1 }}] }} }}",
        srv.cert.display(),
        srv.key.display()
    );
    let admin = free_addr();
    let up = Upstream::head_echo();
    let yaml = format!(
        "admin: {{ address: \"{admin}\" }}\n{}",
        proxy_yaml(up.addr, &tls, "")
    );
    let server = TestServer::start(&yaml, registry(runtime.clone()));
    let port = server.port("tls");
    let c = connector(&pki.ca_pem);
    let ops = |i: usize| cards[i].stats().operations();

    tokio::time::timeout(Duration::from_secs(20), async {
        for _ in 0..10 {
            assert!(get(&c, port).await.starts_with("HTTP/1.1 200"));
        }
        assert_eq!(
            ops(0) + ops(1),
            10,
            "every full handshake signs on an engine"
        );
        // Concurrent handshakes spread over both cards.
        let burst: Vec<_> = (0..20)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { get(&c, port).await })
            })
            .collect();
        for b in burst {
            assert!(b.await.unwrap().starts_with("HTTP/1.1 200"));
        }
        assert_eq!(ops(0) + ops(1), 30);
        assert!(
            ops(0) > 0 && ops(1) > 0,
            "one card idle: {} / {}",
            ops(0),
            ops(1)
        );

        // card0 fails: everything goes to card1.
        cards[0].fail();
        let before = (ops(0), ops(1));
        for _ in 0..5 {
            assert!(get(&c, port).await.starts_with("HTTP/1.1 200"));
        }
        assert_eq!(ops(0), before.0);
        assert_eq!(ops(1), before.1 + 5);

        // Both failed: handshakes still complete (on the blocking pool, not the I/O thread).
        cards[1].fail();
        assert!(get(&c, port).await.starts_with("HTTP/1.1 200"));
        cards[0].recover();
        cards[1].recover();

        // Per-engine metrics on the admin endpoint.
        let text = raw::get(admin, "/stats/prometheus", &[]).await;
        assert!(
            text.contains("proxy_tls_offload_operations_total{engine=\"card0\"}"),
            "{text}"
        );
        assert!(
            text.contains("proxy_tls_offload_queue_depth{engine=\"card1\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("proxy_tls_offload_latency_seconds_count{engine=\"card1\"}"),
            "{text}"
        );
        assert!(
            text.contains("proxy_tls_offload_failures_total{engine=\"card0\"}"),
            "{text}"
        );
        assert!(
            text.contains("proxy_tls_handshakes_total{version=\"tls13\"} 36"),
            "{text}"
        );
    })
    .await
    .unwrap();
}

/// Nice value (field 19) and scheduling policy (field 41) of the calling thread.
fn nice_and_policy() -> Option<(i64, i64)> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some((fields.get(16)?.parse().ok()?, fields.get(38)?.parse().ok()?))
}

#[tokio::test]
async fn the_yaml_thread_priority_reaches_the_engine_threads() {
    if nice_and_policy().is_none() {
        eprintln!("SKIPPED: no /proc/thread-self on this system");
        return;
    }
    let cfg: proxy_tls::TerminationConfig = proxy_core::config::from_yaml(
        "certificates: [{secret: s}]\n\
         offload: {engines: [{name: nice12, thread_priority: {nice: 12}}, {name: idle, thread_priority: idle}, {name: default}]}",
    )
    .unwrap();
    let runtime = proxy_tls::TlsRuntime::default();
    let dispatcher = runtime.dispatcher(cfg.offload.as_ref().unwrap()).unwrap();
    let seen = |i: usize| {
        let engine = dispatcher.engines()[i].clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let job = proxy_tls::offload::OffloadJob::new(move || {
            let _ = tx.send(nice_and_policy());
        });
        assert!(engine.submit(job).is_ok());
        rx.recv_timeout(Duration::from_secs(5)).unwrap()
    };
    assert_eq!(seen(0), Some((12, 0)), "{{nice: 12}}");
    assert_eq!(
        seen(1).map(|(_, policy)| policy),
        Some(5),
        "idle: SCHED_IDLE"
    );
    assert_eq!(seen(2), Some((19, 0)), "the default: nice 19");
}
