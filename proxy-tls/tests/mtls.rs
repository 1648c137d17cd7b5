//! Mutual TLS in `optional` mode and client-certificate roots from the secret source:
//! a client without a certificate is served without a peer identity, one with a
//! valid certificate gets its identity into the request, one with a bad certificate
//! is refused; rotating the roots changes who is trusted.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;

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
    if !have("curl") {
        return;
    }
    let pki = Pki::new("mtls-optional");
    let other = Pki::new("mtls-optional-other");
    let srv = pki.server("srv", &["a.test"]);
    let secrets = Arc::new(proxy_tls::rotation::MemorySecrets::default());
    let roots = |p: &Pki| proxy_tls::rotation::Secret::roots(std::fs::read(&p.ca_pem).unwrap());
    secrets.set("clients", roots(&pki));
    let tls = format!(
        "{{ certificates: [{{ cert: {}, key: {} }}], client_auth: {{ roots_secret: clients, mode: optional }} }}",
        srv.cert.display(),
        srv.key.display()
    );
    let runtime = proxy_tls::TlsRuntime::with_secrets(secrets.clone());
    let server = start(
        &proxy_yaml(echo_upstream(), &tls, "{ typed: tls_facts }"),
        registry(runtime),
    );
    let port = port_of(&server, "tls");
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
