//! Mutual TLS against `openssl s_client` and `curl`: in `required` mode a good client
//! certificate is accepted (its identity reaches the request) and a missing or
//! expired one refused; in `optional` mode with roots from the secret source a client
//! without a certificate is served without a peer identity, one with a valid
//! certificate gets its identity into the request, one with a bad certificate is
//! refused, and rotating the roots changes who is trusted.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::{sync::Arc, time::Duration};

use common::*;
use proxy_test_support::{
    pki::{Issued, Pki},
    tools::installed,
    TestServer, Upstream,
};

const GET: &str = "GET /hello HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n";

fn get(port: u16, ca: &str, cert: Option<&Issued>) -> Output {
    let resolve = format!("a.test:{port}:127.0.0.1");
    let url = format!("https://a.test:{port}/who");
    let mut args = vec![
        "-sv".to_owned(),
        "--http1.1".into(),
        "--cacert".into(),
        ca.into(),
    ];
    if let Some(c) = cert {
        args.extend(["--cert".into(), c.cert.display().to_string()]);
        args.extend(["--key".into(), c.key.display().to_string()]);
    }
    args.extend(["--resolve".into(), resolve, url]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    curl(&args)
}

#[test]
fn optional_client_certificates_and_roots_from_a_secret() {
    if !installed("curl") {
        return;
    }
    let pki = Pki::new("mtls-optional");
    let other = Pki::new("mtls-optional-other");
    let srv = pki.server("srv", &["a.test"]);
    let secrets = Arc::new(proxy_tls::rotation::MemorySecrets::default());
    let roots = |p: &Pki| proxy_tls::rotation::Secret::roots(std::fs::read(&p.ca_pem).unwrap());
    secrets.set("clients", roots(&pki));
    let tls = format!(
        "{{ certificates: [{{ cert: {}, key: {} }}], client_auth: {{ roots: {{ secret: clients }}, mode: optional }} }}",
        srv.cert.display(),
        srv.key.display()
    );
    let runtime = proxy_tls::TlsRuntime::with_secrets(secrets.clone());
    let up = Upstream::head_echo();
    let server = TestServer::start(
        &proxy_yaml(up.addr, &tls, "{ typed: tls_facts }"),
        registry(runtime),
    );
    let port = server.port("tls");
    let ca = pki.ca_pem.display().to_string();
    let alice = pki.client("alice", "alice", &["spiffe://example.org/alice"]);
    let mallory = other.client("mallory", "mallory", &["spiffe://example.org/mallory"]);

    let anonymous = get(port, &ca, None);
    assert!(anonymous.ok, "{}", anonymous.text);
    assert!(
        anonymous.text.contains("< HTTP/1.1 200"),
        "{}",
        anonymous.text
    );
    assert!(!anonymous.text.contains("x-peer-uri"), "{}", anonymous.text);

    let known = get(port, &ca, Some(&alice));
    assert!(
        known
            .text
            .contains("x-peer-uri: spiffe://example.org/alice"),
        "{}",
        known.text
    );
    assert!(
        known.text.contains("x-peer-subject: CN=alice"),
        "{}",
        known.text
    );

    let stranger = get(port, &ca, Some(&mallory));
    assert!(
        !stranger.text.contains("< HTTP/1.1 200"),
        "{}",
        stranger.text
    );

    // Trust moves to the other CA: mallory is in, alice is out.
    secrets.set("clients", roots(&other));
    let now_known = get(port, &ca, Some(&mallory));
    assert!(
        now_known
            .text
            .contains("x-peer-uri: spiffe://example.org/mallory"),
        "{}",
        now_known.text
    );
    let now_stranger = get(port, &ca, Some(&alice));
    assert!(
        !now_stranger.text.contains("< HTTP/1.1 200"),
        "{}",
        now_stranger.text
    );
}

#[test]
fn mtls_accepts_a_good_client_certificate_and_refuses_others() {
    if !installed("openssl") || !installed("curl") {
        return;
    }
    let pki = Pki::new("mtls");
    let server = pki.server("srv", &["a.test"]);
    let tls = format!(
        "{{ certificates: [{{ cert: {}, key: {} }}], client_auth: {{ roots: {{ files: [{}] }}, mode: required }} }}",
        server.cert.display(),
        server.key.display(),
        pki.ca_pem.display()
    );
    let runtime = proxy_tls::TlsRuntime::default();
    let up = Upstream::head_echo();
    let proxy = TestServer::start(
        &proxy_yaml(up.addr, &tls, "{ typed: tls_facts }"),
        registry(runtime.clone()),
    );
    let port = proxy.port("tls");
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
    // (curl may hit a broken pipe writing its request before it reads the alert;
    // s_client below reads it.)
    let none = s_client(port, &["-servername", "a.test", "-CAfile", &ca], GET);
    assert!(!none.text.contains("HTTP/1.1 200"), "{}", none.text);
    assert!(
        none.text.contains("alert certificate required"),
        "{}",
        none.text
    );

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
