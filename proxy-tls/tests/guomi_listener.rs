//! Guomi (RFC 8998) and international clients on one `tls` listener: a client
//! offering the RFC 8998 suites gets the SM2 certificate and TLS_SM4_GCM_SM3, any
//! other the ECDSA one; a Tongsuo client (when `scripts/deps/proxy-tls-guomi.sh`
//! installed it; else `SKIPPED:`) reaches the upstream through the filter.

#![allow(clippy::unwrap_used)]

use crate::common;
use crate::test_pki;
use crate::tongsuo;

use std::time::Duration;

use common::*;
use proxy_test_support::{pki::Pki, TestServer, Upstream};

const GET: &str = "GET /hello HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n";

/// One listener, Guomi and international side by side: a client offering the RFC 8998
/// suites gets the SM2 certificate and TLS_SM4_GCM_SM3, any other the ECDSA one.
#[tokio::test]
async fn guomi_and_international_clients_share_a_listener() {
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let pki = Pki::new("guomi-side");
    let ecdsa = pki.server("ecdsa", &["a.test"]);
    let sm2_ca = test_pki::issue(&test_pki::Spec::ca("SM2 Root"), None);
    let sm2 = test_pki::issue(
        &test_pki::Spec::leaf("a.test", &["a.test"], test_pki::SERVER_AUTH),
        Some(&sm2_ca),
    );
    let (sm2_cert, sm2_key) = (pki.dir.join("sm2.pem"), pki.dir.join("sm2.key"));
    std::fs::write(&sm2_cert, sm2.cert_pem()).unwrap();
    std::fs::write(&sm2_key, sm2.key_pem()).unwrap();
    let tls = format!(
        "{{ certificates: [{{ cert: {}, key: {} }}], guomi: {{ cert: {}, key: {} }} }}",
        ecdsa.cert.display(),
        ecdsa.key.display(),
        sm2_cert.display(),
        sm2_key.display()
    );
    let runtime = proxy_tls::TlsRuntime::default();
    let up = Upstream::head_echo();
    let server = TestServer::start(
        &proxy_yaml(up.addr, &tls, "{ typed: tls_facts }"),
        registry(runtime.clone()),
    );
    let port = server.port("tls");

    let mut sm2_roots = proxy_tls::guomi::Sm2RootStore::new();
    sm2_roots.add(&sm2_ca.der).unwrap();
    let guomi_client = proxy_tls::guomi::GuomiClientBuilder::new(std::sync::Arc::new(sm2_roots))
        .alpn(vec![b"http/1.1".to_vec()])
        .build()
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in proxy_tls::material::parse_certs(&std::fs::read(&pki.ca_pem).unwrap(), "ca").unwrap() {
        roots.add(c).unwrap();
    }
    let mut international = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    international.alpn_protocols = vec![b"http/1.1".to_vec()];

    async fn fetch(config: rustls::ClientConfig, port: u16) -> (Vec<u8>, String) {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(ServerName::try_from("a.test").unwrap(), tcp)
            .await
            .unwrap();
        let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        tls.write_all(GET.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out).await;
        (leaf, String::from_utf8_lossy(&out).into_owned())
    }

    tokio::time::timeout(Duration::from_secs(20), async {
        let (leaf, page) = fetch(guomi_client, port).await;
        assert_eq!(
            leaf,
            sm2.der.to_vec(),
            "the Guomi client did not get the SM2 certificate"
        );
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(page.contains("x-tls-cipher: TLS_SM4_GCM_SM3"), "{page}");
        assert!(page.contains("x-tls-version: TLSv1.3"), "{page}");

        let (leaf, page) = fetch(international, port).await;
        assert_ne!(leaf, sm2.der.to_vec());
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(page.contains("x-tls-cipher: TLS13_"), "{page}");
    })
    .await
    .unwrap();
    let mut text = String::new();
    runtime.metrics().render(&mut text);
    assert!(
        text.contains("proxy_tls_guomi_handshakes_total 1"),
        "{text}"
    );
}

/// Tongsuo through the proxy: the `tls` network filter terminates with its
/// Guomi config for a client offering only TLS_SM4_GCM_SM3 (an ECDSA
/// certificate serves everyone else), and the HTTP request reaches the upstream.
#[tokio::test]
async fn tongsuo_client_through_the_proxy_termination() {
    let Some(python) = tongsuo::tongsuo_python() else {
        return;
    };
    let pki = tongsuo::Pki::new("proxy");
    let ecdsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let ecdsa_cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&ecdsa)
        .unwrap();
    std::fs::write(pki.dir.join("ecdsa.pem"), ecdsa_cert.pem()).unwrap();
    std::fs::write(pki.dir.join("ecdsa.key"), ecdsa.serialize_pem()).unwrap();
    let tls = format!(
        "{{ certificates: [{{ cert: {}, key: {} }}], guomi: {{ cert: {}, key: {} }} }}",
        pki.path("ecdsa.pem"),
        pki.path("ecdsa.key"),
        pki.path("server.pem"),
        pki.path("server.key"),
    );
    let up = Upstream::head_echo();
    let server = TestServer::start(&proxy_yaml(up.addr, &tls, ""), registry(Default::default()));
    let port = server.port("tls");

    let mut cmd = tongsuo::python_cmd(&python);
    cmd.args([
        "client".to_string(),
        "--port".into(),
        port.to_string(),
        "--ca".into(),
        pki.path("ca.pem"),
        "--http-get".into(),
        "/guomi".into(),
    ]);
    let out = tokio::time::timeout(
        tongsuo::TEST_TIMEOUT,
        tokio::task::spawn_blocking(move || cmd.output().unwrap()),
    )
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "tongsuo client stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "tongsuo client failed");
    assert!(stdout.contains("CIPHER TLS_SM4_GCM_SM3"), "{stdout}");
    for line in tongsuo::SM2_SIGNED {
        assert!(stdout.contains(line), "proxy signed with SM2-SM3: {stdout}");
    }
    assert!(stdout.contains("HTTP_STATUS HTTP/1.1 200"), "{stdout}");
    assert!(
        stdout.contains("GET /guomi HTTP/1.1"),
        "upstream saw the request: {stdout}"
    );
    drop(server);
}
