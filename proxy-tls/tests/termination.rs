//! TLS termination against real third-party clients (`openssl s_client`, `curl`):
//! TLS 1.2 and 1.3, ALPN h2, SNI picking between two certificates, mutual TLS
//! accepted with a good client certificate and refused without one or with an
//! expired one, and bad input (garbage, a stalled handshake) ending only that
//! connection with a metric by reason.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GET: &str = "GET /hello HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n";

struct Setup {
    pki: Pki,
    port: u16,
    runtime: proxy_tls::TlsRuntime,
    _server: proxy_core::Server,
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
    let server = start(
        &proxy_yaml(echo_upstream(), &tls, "{ typed: tls_facts }"),
        registry(runtime.clone()),
    );
    let port = port_of(&server, "tls");
    Setup {
        pki,
        port,
        runtime,
        _server: server,
    }
}

fn ca(s: &Setup) -> String {
    s.pki.ca_pem.display().to_string()
}

#[test]
fn openssl_tls13_and_tls12_with_verified_chain() {
    if !have("openssl") {
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
    if !have("openssl") {
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
    if !have("curl") {
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

#[test]
fn mtls_accepts_a_good_client_certificate_and_refuses_others() {
    if !have("openssl") || !have("curl") {
        return;
    }
    let pki = Pki::new("mtls");
    let server = pki.server("srv", &["a.test"]);
    let tls = format!(
        "{{ certificates: [{{ cert: {}, key: {} }}], client_auth: {{ roots: {}, mode: required }} }}",
        server.cert.display(),
        server.key.display(),
        pki.ca_pem.display()
    );
    let runtime = proxy_tls::TlsRuntime::default();
    let proxy = start(
        &proxy_yaml(echo_upstream(), &tls, "{ typed: tls_facts }"),
        registry(runtime.clone()),
    );
    let port = port_of(&proxy, "tls");
    let ca = pki.ca_pem.display().to_string();
    let client = pki.client(
        "client",
        "web client",
        &["spiffe://cluster.local/ns/default/sa/web"],
    );
    let (cert, key) = (
        client.cert.display().to_string(),
        client.key.display().to_string(),
    );

    let good = s_client(
        port,
        &[
            "-servername",
            "a.test",
            "-CAfile",
            &ca,
            "-cert",
            &cert,
            "-key",
            &key,
        ],
        GET,
    );
    assert!(good.text.contains("HTTP/1.1 200 OK"), "{}", good.text);
    assert!(
        good.text
            .contains("x-peer-uri: spiffe://cluster.local/ns/default/sa/web"),
        "{}",
        good.text
    );
    assert!(
        good.text.contains("x-peer-subject: CN=web client"),
        "{}",
        good.text
    );

    let resolve = format!("a.test:{port}:127.0.0.1");
    let url = format!("https://a.test:{port}/hello");
    let good = curl(&[
        "-sv",
        "--cacert",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        "--resolve",
        &resolve,
        &url,
    ]);
    assert!(good.ok, "{}", good.text);
    assert!(
        good.text
            .contains("x-peer-uri: spiffe://cluster.local/ns/default/sa/web"),
        "{}",
        good.text
    );

    // No client certificate: refused with an alert, nothing reaches the upstream.
    let none = curl(&["-sv", "--cacert", &ca, "--resolve", &resolve, &url]);
    assert!(!none.ok, "{}", none.text);
    assert!(!none.text.contains("HTTP/1.1 200"), "{}", none.text);
    assert!(
        none.text.contains("certificate required") || none.text.contains("alert"),
        "{}",
        none.text
    );
    let none = s_client(port, &["-servername", "a.test", "-CAfile", &ca], GET);
    assert!(!none.text.contains("HTTP/1.1 200"), "{}", none.text);

    // An expired client certificate: refused too.
    let old = pki.expired_client("old");
    let expired = curl(&[
        "-sv",
        "--cacert",
        &ca,
        "--cert",
        &old.cert.display().to_string(),
        "--key",
        &old.key.display().to_string(),
        "--resolve",
        &resolve,
        &url,
    ]);
    assert!(!expired.ok, "{}", expired.text);
    assert!(!expired.text.contains("HTTP/2 200"), "{}", expired.text);
    let expired = s_client(
        port,
        &[
            "-servername",
            "a.test",
            "-CAfile",
            &ca,
            "-cert",
            &old.cert.display().to_string(),
            "-key",
            &old.key.display().to_string(),
        ],
        GET,
    );
    assert!(
        expired.text.contains("alert certificate expired"),
        "{}",
        expired.text
    );
    assert!(!expired.text.contains("HTTP/1.1 200"), "{}", expired.text);

    // A certificate from another CA: refused.
    let other = Pki::new("mtls-other").client("stranger", "stranger", &[]);
    let stranger = curl(&[
        "-sv",
        "--cacert",
        &ca,
        "--cert",
        &other.cert.display().to_string(),
        "--key",
        &other.key.display().to_string(),
        "--resolve",
        &resolve,
        &url,
    ]);
    assert!(!stranger.ok, "{}", stranger.text);

    let m = runtime.metrics();
    for _ in 0..50 {
        if m.failures("client_certificate") >= 5 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        m.failures("client_certificate") >= 5,
        "client_certificate failures: {}",
        m.failures("client_certificate")
    );
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
