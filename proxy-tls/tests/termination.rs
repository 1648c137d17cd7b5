//! TLS termination against real third-party clients (`openssl s_client`, `curl`):
//! TLS 1.2 and 1.3, ALPN h2, SNI picking between two certificates, session resumption
//! across a reload, and bad input (garbage, a stalled handshake, no common
//! parameters) ending only that connection with a metric by reason. Mutual TLS is in
//! `mtls.rs`, 0-RTT in `zero_rtt.rs`, config errors in `config_errors.rs`.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use common::*;
use proxy_test_support::{pki::Pki, tools::installed, TestServer, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GET: &str = "GET /hello HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n";

struct Setup {
    pki: Pki,
    port: u16,
    runtime: proxy_tls::TlsRuntime,
    _server: TestServer,
    _upstream: Upstream,
}

/// A proxy terminating TLS with two certificates (`a.test`, and `*.b.test` + `b.test`).
fn setup(name: &str, extra: &str) -> Setup {
    let pki = Pki::new(name);
    let a = pki.server("a", &["a.test"]);
    let b = pki.server("b", &["*.b.test", "b.test"]);
    let tls = format!(
        "{{ certificates: [{{ cert: {}, key: {} }}, {{ cert: {}, key: {} }}]{extra} }}",
        a.cert.display(),
        a.key.display(),
        b.cert.display(),
        b.key.display()
    );
    let runtime = proxy_tls::TlsRuntime::default();
    let up = Upstream::head_echo();
    let server = TestServer::start(
        &proxy_yaml(up.addr, &tls, "{ typed: tls_facts }"),
        registry(runtime.clone()),
    );
    let port = server.port("tls");
    Setup {
        pki,
        port,
        runtime,
        _server: server,
        _upstream: up,
    }
}

fn ca(s: &Setup) -> String {
    s.pki.ca_pem.display().to_string()
}

#[test]
fn openssl_tls13_and_tls12_with_verified_chain() {
    if !installed("openssl") {
        return;
    }
    let s = setup("versions", "");
    let ca = ca(&s);
    for (flag, version) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
        let out = s_client(
            s.port,
            &[
                flag,
                "-servername",
                "a.test",
                "-CAfile",
                &ca,
                "-verify_return_error",
            ],
            GET,
        );
        assert!(
            out.text.contains("Verify return code: 0 (ok)"),
            "{}",
            out.text
        );
        assert!(
            out.text.contains(&format!("Protocol  : {version}"))
                || out.text.contains(&format!("New, {version}")),
            "{}",
            out.text
        );
        assert!(out.text.contains("HTTP/1.1 200 OK"), "{}", out.text);
        assert!(
            out.text.contains(&format!("x-tls-version: {version}")),
            "{}",
            out.text
        );
        assert!(
            out.text.contains("x-forwarded-proto: https"),
            "{}",
            out.text
        );
    }
}

#[test]
fn sni_picks_between_two_certificates() {
    if !installed("openssl") {
        return;
    }
    let s = setup("sni", "");
    let ca = ca(&s);
    let a = s_client(
        s.port,
        &[
            "-servername",
            "a.test",
            "-CAfile",
            &ca,
            "-verify_return_error",
        ],
        GET,
    );
    assert!(
        a.text.contains("CN = a.test") || a.text.contains("CN=a.test"),
        "{}",
        a.text
    );
    let b = s_client(
        s.port,
        &[
            "-servername",
            "x.b.test",
            "-CAfile",
            &ca,
            "-verify_return_error",
        ],
        GET,
    );
    assert!(
        b.text.contains("CN = *.b.test") || b.text.contains("CN=*.b.test"),
        "{}",
        b.text
    );
    assert!(b.text.contains("Verify return code: 0 (ok)"), "{}", b.text);
    // No SNI: the default (first) certificate.
    let none = s_client(s.port, &["-noservername", "-CAfile", &ca], GET);
    assert!(
        none.text.contains("CN = a.test") || none.text.contains("CN=a.test"),
        "{}",
        none.text
    );
}

#[test]
fn curl_negotiates_h2_and_http11_by_alpn() {
    if !installed("curl") {
        return;
    }
    let s = setup("alpn", "");
    let ca = ca(&s);
    let resolve = format!("a.test:{}:127.0.0.1", s.port);
    let url = format!("https://a.test:{}/hello", s.port);
    let h2 = curl(&[
        "-sv",
        "--http2",
        "--cacert",
        &ca,
        "--resolve",
        &resolve,
        &url,
    ]);
    assert!(h2.ok, "{}", h2.text);
    assert!(
        h2.text.contains("ALPN: server accepted h2")
            || h2.text.contains("ALPN, server accepted to use h2"),
        "{}",
        h2.text
    );
    assert!(h2.text.contains("< HTTP/2 200"), "{}", h2.text);
    assert!(h2.text.contains("x-tls-alpn: h2"), "{}", h2.text);
    let h1 = curl(&[
        "-sv",
        "--http1.1",
        "--cacert",
        &ca,
        "--resolve",
        &resolve,
        &url,
    ]);
    assert!(h1.ok, "{}", h1.text);
    assert!(h1.text.contains("< HTTP/1.1 200"), "{}", h1.text);
    assert!(h1.text.contains("x-tls-alpn: http/1.1"), "{}", h1.text);
}

#[tokio::test]
async fn garbage_and_stalled_handshakes_end_only_their_connection() {
    let s = setup("bad", ", handshake_timeout: 300ms");
    let addr = format!("127.0.0.1:{}", s.port);
    tokio::time::timeout(Duration::from_secs(10), async {
        // Not TLS at all: closed after an alert, counted as malformed.
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out).await;
        assert!(
            !out.windows(4).any(|w| w == b"HTTP"),
            "plaintext answered: {out:?}"
        );
        if let Some(first) = out.first() {
            assert_eq!(*first, 0x15, "expected a TLS alert record: {out:?}");
        }
        // A TLS record header promising a ClientHello that never comes: timeout.
        let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stalled
            .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
            .await
            .unwrap();
        // Meanwhile other connections are served.
        let mut ok = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let hello_only =
            tokio::time::timeout(Duration::from_millis(100), ok.read(&mut [0u8; 1])).await;
        assert!(hello_only.is_err(), "the server spoke first");
        let mut buf = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(3), stalled.read_to_end(&mut buf)).await;
        assert!(closed.is_ok(), "a stalled handshake was not timed out");
        // A ClientHello with a bogus body: a decode error alert.
        let mut bogus = tokio::net::TcpStream::connect(&addr).await.unwrap();
        bogus
            .write_all(&[
                0x16, 0x03, 0x01, 0x00, 0x06, 0x01, 0x00, 0x00, 0x02, 0xff, 0xff,
            ])
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = bogus.read_to_end(&mut out).await;
        assert_eq!(out.first(), Some(&0x15), "expected an alert: {out:?}");
    })
    .await
    .unwrap();
    let m = s.runtime.metrics();
    for _ in 0..100 {
        if m.failures("timeout") >= 1 && m.failures("malformed") >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The stalled one, and the idle one that never sent a ClientHello.
    assert!(m.failures("timeout") >= 1);
    assert!(
        m.failures("malformed") >= 2,
        "malformed: {}",
        m.failures("malformed")
    );
}

#[test]
fn sessions_resume_with_tickets_and_survive_a_config_reload() {
    if !installed("openssl") {
        return;
    }
    let pki = Pki::new("resume");
    let a = pki.server("a", &["a.test"]);
    let tls = format!(
        "{{ certificates: [{{ cert: {}, key: {} }}] }}",
        a.cert.display(),
        a.key.display()
    );
    let up = Upstream::head_echo();
    let yaml = proxy_yaml(up.addr, &tls, "");
    let runtime = proxy_tls::TlsRuntime::default();
    let server = TestServer::start(&yaml, registry(runtime.clone()));
    let port = server.port("tls");
    let ca = pki.ca_pem.display().to_string();
    for version in ["-tls1_3", "-tls1_2"] {
        let sess = pki.dir.join(format!("session{version}.pem"));
        let sess = sess.display().to_string();
        let first = s_client(
            port,
            &[
                version,
                "-servername",
                "a.test",
                "-CAfile",
                &ca,
                "-sess_out",
                &sess,
            ],
            GET,
        );
        assert!(first.text.contains("HTTP/1.1 200"), "{}", first.text);
        assert!(first.text.contains("New, TLSv1."), "{}", first.text);
        let again = s_client(
            port,
            &[
                version,
                "-servername",
                "a.test",
                "-CAfile",
                &ca,
                "-sess_in",
                &sess,
            ],
            GET,
        );
        assert!(again.text.contains("Reused, TLSv1."), "{}", again.text);
        if version == "-tls1_3" {
            // The same listener config reloaded: its ticket keys are kept.
            server.reload(&yaml).unwrap();
            let third = s_client(
                port,
                &[
                    version,
                    "-servername",
                    "a.test",
                    "-CAfile",
                    &ca,
                    "-sess_in",
                    &sess,
                ],
                GET,
            );
            assert!(third.text.contains("Reused, TLSv1.3"), "{}", third.text);
        }
    }
}

#[test]
fn a_client_without_common_parameters_gets_an_alert() {
    if !installed("openssl") {
        return;
    }
    let s = setup("unsupported", "");
    // CBC-only TLS 1.2 (rustls has no CBC suites), and TLS 1.1.
    let cbc = s_client(
        s.port,
        &["-tls1_2", "-cipher", "AES128-SHA", "-servername", "a.test"],
        GET,
    );
    assert!(cbc.text.contains("alert handshake failure"), "{}", cbc.text);
    let old = s_client(
        s.port,
        &[
            "-tls1_1",
            "-cipher",
            "DEFAULT@SECLEVEL=0",
            "-servername",
            "a.test",
        ],
        GET,
    );
    assert!(!old.text.contains("HTTP/1.1 200"), "{}", old.text);
    let m = s.runtime.metrics();
    for _ in 0..50 {
        if m.failures("unsupported") >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        m.failures("unsupported") >= 2,
        "unsupported: {}",
        m.failures("unsupported")
    );
}

/// A first handshake message that is not a ClientHello (an unknown handshake type, or
/// a known one out of place) gets a fatal `unexpected_message` alert (RFC 8446
/// section 4) before the close, and counts as `malformed`.
#[tokio::test]
async fn an_unknown_handshake_type_gets_unexpected_message() {
    let s = setup("unknown-handshake-type", "");
    let addr = format!("127.0.0.1:{}", s.port);
    // Handshake record, type 0x63 (unassigned) with a 4-byte body; type 0
    // (HelloRequest, a server's message) with an empty one.
    let unknown: &[u8] = &[
        0x16, 0x03, 0x01, 0x00, 0x08, 0x63, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00,
    ];
    let hello_request: &[u8] = &[0x16, 0x03, 0x01, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00];
    tokio::time::timeout(Duration::from_secs(10), async {
        for hello in [unknown, hello_request] {
            let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
            c.write_all(hello).await.unwrap();
            let mut out = Vec::new();
            let _ = c.read_to_end(&mut out).await;
            // Alert record, TLS 1.2, length 2, fatal (2), unexpected_message (10).
            assert_eq!(
                out,
                [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x0a],
                "handshake type {:#04x}",
                hello[5]
            );
        }
    })
    .await
    .unwrap();
    let m = s.runtime.metrics();
    for _ in 0..100 {
        if m.failures("malformed") >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(m.failures("malformed"), 2);
}
