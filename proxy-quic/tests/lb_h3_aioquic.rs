//! The issue's end-to-end test: PyPI's aioquic (a QUIC and HTTP/3 client nobody here
//! wrote) makes HTTP/3 requests through the QUIC-LB forwarder to two `H3Listener`s,
//! each with its own server ID (`CidGenerator`) and each proxying through
//! proxy-core's router and proxy to one HTTP/1.1 upstream. The client starts from a
//! port whose 4-tuple hashes to proxy A, then moves to a new connection ID and a
//! port whose 4-tuple hashes to proxy B: its next requests are still answered by A
//! (the `x-proxy` header each proxy adds) on the same connection, the forwarder
//! having routed them by connection ID. Installed by `scripts/deps/proxy-quic.sh`;
//! skipped loudly without it.

// Test code: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used)]

use crate::aioquic_support;
use crate::h3_support;

use std::{
    net::{SocketAddr, UdpSocket},
    time::Duration,
};

use aioquic_support::{json_lines, Aioquic};
use h3_support::{proxy_stack, Running, TEST_TIMEOUT};
use http::HeaderValue;
use proxy_core::BoxHttp;
use proxy_quic::{
    h3::{server_config, H3Listener},
    lb::{ForwarderBuilder, Routes},
    Decoder, DecoderConfig, NonceSpace, QuicLbConfig, QuicLbServer, ServerId,
};
use proxy_test_support::{pki::Pki, upstream::Echoed, with_timeout, Upstream};
use tower::ServiceBuilder;
use tower_http::set_header::SetResponseHeaderLayer;

const KEY: &str = "8f95f09245765f80256934e50c66207f";

/// A proxy's QUIC-LB generator: config 0, 2-octet server ID, 6-octet nonce
/// (four-pass), the length self-encoded.
fn generator(server_id: &str) -> proxy_quic::CidGenerator {
    let config: QuicLbConfig = serde_json::from_str(&format!(
        r#"{{"config_id": 0, "server_id": "{server_id}", "nonce_length": 6, "cid_key": "{KEY}",
            "first_octet_encodes_cid_length": true}}"#
    ))
    .unwrap();
    QuicLbServer::try_from(&config)
        .unwrap()
        .generator(NonceSpace::WHOLE)
        .unwrap()
}

fn routes(servers: [(ServerId, SocketAddr); 2]) -> Routes {
    let decoder: DecoderConfig = serde_json::from_str(&format!(
        r#"{{"configs": [{{"config_id": 0, "server_id_length": 2, "nonce_length": 6,
            "cid_key": "{KEY}", "first_octet_encodes_cid_length": true}}]}}"#
    ))
    .unwrap();
    Routes::new(Decoder::try_from(&decoder).unwrap(), servers).unwrap()
}

/// A free local UDP port whose 4-tuple toward `lb` hashes to `target`, not `not`.
fn port_hashing_to(routes: &Routes, lb: SocketAddr, target: ServerId, not: &[u16]) -> u16 {
    for _ in 0..500 {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let local = socket.local_addr().unwrap();
        if !not.contains(&local.port()) && routes.hash_route(local, lb) == Some(target) {
            return local.port();
        }
    }
    panic!("no client port hashes to {target}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aioquic_through_the_forwarder_stays_on_its_proxy_across_a_rebinding() {
    let Some(aioquic) = Aioquic::find("the aioquic test through the QUIC-LB forwarder") else {
        return;
    };
    with_timeout(TEST_TIMEOUT, async move {
        let up = Upstream::echo("backend");
        let pki = Pki::new("lb-h3-aioquic");
        let issued = pki.server("server", &["localhost"]);
        let proxy = |name: &'static str, server_id: &str| {
            let tls = server_config(issued.cert_pem.as_bytes(), issued.key_pem.as_bytes()).unwrap();
            let stack = BoxHttp::new(
                ServiceBuilder::new()
                    .layer(SetResponseHeaderLayer::overriding(
                        http::header::HeaderName::from_static("x-proxy"),
                        HeaderValue::from_static(name),
                    ))
                    .service(proxy_stack(up.addr)),
            );
            let builder = H3Listener::builder(name, tls).cid_generator(generator(server_id));
            Running::start(builder, stack)
        };
        let (a, b) = (proxy("A", "0a01"), proxy("B", "0a02"));
        let (id_a, id_b) = (
            ServerId::from_hex("0a01").unwrap(),
            ServerId::from_hex("0a02").unwrap(),
        );
        let routes = routes([(id_a, a.addr), (id_b, b.addr)]);
        let lb = ForwarderBuilder::new(routes.clone())
            .bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let lb_addr = lb.local_addr();
        // The first 4-tuple hashes to A, the one after the rebinding to B: only the
        // connection ID can keep the client on A.
        let first = port_hashing_to(&routes, lb_addr, id_a, &[]);
        let moved = port_hashing_to(&routes, lb_addr, id_b, &[first]);

        let args = [
            "--port",
            &lb_addr.port().to_string(),
            "--host",
            "localhost",
            "--local-port",
            &first.to_string(),
            "--rebind-port",
            &moved.to_string(),
            "--ca",
            &pki.ca_pem.display().to_string(),
        ];
        let out = aioquic
            .run(
                "lb_h3_client.py",
                args.iter().map(|s| s.to_string()).collect(),
                Duration::from_secs(20),
            )
            .await;
        assert!(out.ok(), "aioquic client failed:\n{}", out.text());
        let answers = json_lines(&out);
        assert_eq!(answers.len(), 6, "{}", out.text());
        for a in &answers {
            let name = a["name"].as_str().unwrap();
            assert_eq!(a["status"], 200, "{name}: {a}");
            assert_eq!(
                a["headers"]["x-proxy"], "A",
                "{name} served by another proxy: {a}"
            );
            assert_eq!(a["headers"]["x-upstream"], "backend", "{name}: {a}");
            let (when, n) = name.split_once('-').unwrap();
            let e = Echoed::parse(a["body"].as_str().unwrap().as_bytes());
            assert_eq!(e.uri, format!("/lb/{when}/{n}"));
            let port = if when == "before" { first } else { moved };
            assert_eq!(a["local_port"], port, "{name}: {a}");
        }
        assert_eq!(up.hits(), 6);

        // One connection, on A only; B never saw a handshake.
        let (sa, sb) = (a.stats(), b.stats());
        assert_eq!((sa.handshakes, sa.requests), (1, 6), "{sa:?}");
        assert_eq!((sb.handshakes, sb.requests), (0, 0), "{sb:?}");
        // The forwarder: the first packets by hash (to A), the rest by connection
        // ID, the moved client included (its 4-tuple would hash to B); two flows,
        // one per client 4-tuple.
        let stats = lb.stats().snapshot();
        assert!(stats.routed_by_hash > 0, "{stats:?}");
        assert!(stats.routed_by_cid > 0, "{stats:?}");
        assert_eq!(stats.flows_opened, 2, "{stats:?}");
        assert_eq!(stats.dropped_total(), 0, "{stats:?}");
        a.stop().await.unwrap();
        b.stop().await.unwrap();
    })
    .await;
}
