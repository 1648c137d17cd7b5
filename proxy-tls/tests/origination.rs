//! TLS origination against `openssl s_server`: verification against configured
//! roots (on by default), SNI, ALPN, client certificates, and the transport used by
//! a cluster through the proxy.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::{sync::Arc, time::Duration};

use common::*;
use proxy_test_support::{pki::Pki, tools::installed, yaml, TestServer};
use proxy_tls::{config::OriginationConfig, OriginationTransport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn transport(yaml: &str) -> (OriginationTransport, Arc<proxy_tls::metrics::TlsMetrics>) {
    let cfg: OriginationConfig = proxy_core::config::from_yaml(yaml).unwrap();
    let runtime = proxy_tls::TlsRuntime::default();
    (
        OriginationTransport::new(&cfg, &runtime).unwrap(),
        runtime.metrics().clone(),
    )
}

async fn get_www(t: &OriginationTransport, port: u16) -> Result<(String, Option<Vec<u8>>), String> {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = t.connect(tcp, addr).await.map_err(|e| e.to_string())?;
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    tls.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await.map_err(|e| e.to_string())?;
    Ok((String::from_utf8_lossy(&out).into_owned(), alpn))
}

/// The class a failed handshake reports (`x-proxy-error-detail` in the proxy).
async fn class_of(t: &OriginationTransport, port: u16) -> &'static str {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    t.connect(tcp, addr).await.err().map_or("-", |e| e.class())
}

#[tokio::test]
async fn verifies_the_server_against_configured_roots() {
    if !installed("openssl") {
        return;
    }
    let pki = Pki::new("orig-verify");
    let srv = pki.server("up", &["up.test"]);
    let server = s_server(&[
        "-cert",
        &srv.cert.display().to_string(),
        "-key",
        &srv.key.display().to_string(),
        "-www",
    ]);
    tokio::time::timeout(Duration::from_secs(20), async {
        let (good, _) = transport(&format!(
            "{{ server_name: up.test, roots: {{ files: [{}] }} }}",
            pki.ca_pem.display()
        ));
        let (page, _) = get_www(&good, server.port).await.unwrap();
        assert!(page.starts_with("HTTP/1.0 200 ok"), "{page}");
        assert!(page.contains("TLSv1.3"), "{page}");

        // TLS 1.2 only.
        let (tls12, _) = transport(&format!(
            "{{ server_name: up.test, versions: [tls12], roots: {{ files: [{}] }} }}",
            pki.ca_pem.display()
        ));
        let (page, _) = get_www(&tls12, server.port).await.unwrap();
        assert!(page.contains("TLSv1.2"), "{page}");

        // The wrong name: refused.
        let (wrong_name, m) = transport(&format!(
            "{{ server_name: other.test, roots: {{ files: [{}] }} }}",
            pki.ca_pem.display()
        ));
        let err = get_www(&wrong_name, server.port).await.unwrap_err();
        assert_eq!(err, "server certificate refused");
        let mut text = String::new();
        m.render(&mut text);
        assert!(
            text.contains(
                "proxy_tls_upstream_handshake_failures_total{reason=\"server_certificate\"} 1"
            ),
            "{text}"
        );

        assert_eq!(class_of(&wrong_name, server.port).await, "tls_bad_name");

        // Roots that do not include the server's CA: refused (verification is on by default).
        let other = Pki::new("orig-other");
        let (untrusted, _) = transport(&format!(
            "{{ server_name: up.test, roots: {{ files: [{}] }} }}",
            other.ca_pem.display()
        ));
        assert_eq!(
            get_www(&untrusted, server.port).await.unwrap_err(),
            "server certificate refused"
        );
        assert_eq!(
            class_of(&untrusted, server.port).await,
            "tls_unknown_issuer"
        );

        // verify: false accepts it.
        let (unverified, _) = transport("{ server_name: up.test, verify: false }");
        let (page, _) = get_www(&unverified, server.port).await.unwrap();
        assert!(page.starts_with("HTTP/1.0 200 ok"), "{page}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn offers_alpn_and_presents_a_client_certificate() {
    if !installed("openssl") {
        return;
    }
    let pki = Pki::new("orig-mtls");
    let srv = pki.server("up", &["up.test"]);
    let client = pki.client(
        "proxy",
        "proxy client",
        &["spiffe://cluster.local/ns/edge/sa/proxy"],
    );
    let server = s_server(&[
        "-cert",
        &srv.cert.display().to_string(),
        "-key",
        &srv.key.display().to_string(),
        "-Verify",
        "1",
        "-verify_return_error",
        "-CAfile",
        &pki.ca_pem.display().to_string(),
        "-alpn",
        "http/1.1",
        "-www",
    ]);
    tokio::time::timeout(Duration::from_secs(20), async {
        let (with_cert, _) = transport(&format!(
            "{{ server_name: up.test, alpn: [h2, http/1.1], roots: {{ files: [{ca}] }}, client_cert: {{ cert: {c}, key: {k} }} }}",
            ca = pki.ca_pem.display(),
            c = client.cert.display(),
            k = client.key.display()
        ));
        let (page, alpn) = get_www(&with_cert, server.port).await.unwrap();
        assert!(page.starts_with("HTTP/1.0 200 ok"), "{page}");
        assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));

        // Without the client certificate the server refuses (in TLS 1.3 the alert
        // arrives after the client's Finished, so the request fails).
        let (without, _) = transport(&format!(
            "{{ server_name: up.test, roots: {{ files: [{}] }} }}",
            pki.ca_pem.display()
        ));
        let res = get_www(&without, server.port).await;
        assert!(!res.as_ref().is_ok_and(|(p, _)| p.contains("200 ok")), "{res:?}");
    })
    .await
    .unwrap();
}

#[test]
fn a_cluster_reaches_s_server_through_the_tls_transport() {
    if !installed("openssl") {
        return;
    }
    let pki = Pki::new("orig-cluster");
    let srv = pki.server("up", &["up.test"]);
    let server = s_server(&[
        "-cert",
        &srv.cert.display().to_string(),
        "-key",
        &srv.key.display().to_string(),
        "-www",
    ]);
    let yaml = yaml::config(
        &[yaml::listener("plain", "secure", &[])],
        &[yaml::cluster(
            "secure",
            &[format!("127.0.0.1:{}", server.port)],
            &[&format!(
                "transport:\n      typed: tls\n      config: {{ server_name: up.test, roots: {{ files: [{}] }} }}",
                pki.ca_pem.display()
            )],
        )],
    );
    let runtime = proxy_tls::TlsRuntime::default();
    let proxy = TestServer::start(&yaml, registry(runtime.clone()));
    let port = proxy.port("plain");
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    use std::io::{Read, Write};
    c.write_all(b"GET / HTTP/1.1\r\nHost: up.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("TLSv1.3"), "{text}");
    let mut m = String::new();
    runtime.metrics().render(&mut m);
    assert!(m.contains("proxy_tls_upstream_handshakes_total 1"), "{m}");
}

#[test]
fn bad_origination_config_is_refused_naming_the_field() {
    let mut r = proxy_core::Registry::default();
    proxy_tls::register(&mut r);
    let yaml = r#"
listeners:
  - name: plain
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: { path: { prefix: "/" } }
            cluster: secure
clusters:
  - name: secure
    endpoints: ["127.0.0.1:1"]
    transport: { typed: tls, config: { roots: { files: [/nonexistent/ca.pem] } } }
"#;
    let err = proxy_core::Server::new(proxy_core::config::Config::from_yaml(yaml).unwrap(), r)
        .err()
        .unwrap();
    let text = proxy_core::DisplayChain(&err).to_string();
    assert!(
        text.contains(
            "clusters[0].transport.config.roots.files[0]: cannot read /nonexistent/ca.pem: "
        ),
        "{text}"
    );
}

#[tokio::test]
async fn upstream_roots_rotate_from_the_secret_source() {
    if !installed("openssl") {
        return;
    }
    let pki = Pki::new("orig-secret");
    let other = Pki::new("orig-secret-other");
    let srv = pki.server("up", &["up.test"]);
    let server = s_server(&[
        "-cert",
        &srv.cert.display().to_string(),
        "-key",
        &srv.key.display().to_string(),
        "-www",
    ]);
    let secrets = Arc::new(proxy_tls::rotation::MemorySecrets::default());
    let roots = |p: &Pki| proxy_tls::rotation::Secret::roots(std::fs::read(&p.ca_pem).unwrap());
    secrets.set("upstream-ca", roots(&other));
    let cfg: OriginationConfig =
        proxy_core::config::from_yaml("{ server_name: up.test, roots: { secret: upstream-ca } }")
            .unwrap();
    let runtime = proxy_tls::TlsRuntime::with_secrets(secrets.clone());
    let metrics = runtime.metrics().clone();
    let t = OriginationTransport::new(&cfg, &runtime).unwrap();
    tokio::time::timeout(Duration::from_secs(20), async {
        assert_eq!(
            get_www(&t, server.port).await.unwrap_err(),
            "server certificate refused"
        );
        secrets.set("upstream-ca", roots(&pki));
        let (page, _) = get_www(&t, server.port).await.unwrap();
        assert!(page.starts_with("HTTP/1.0 200 ok"), "{page}");
        // Garbage roots are refused; the working roots stay.
        secrets.set("upstream-ca", proxy_tls::rotation::Secret::roots("garbage"));
        assert_eq!(metrics.rotations_refused(), 1);
        assert!(get_www(&t, server.port).await.is_ok());
    })
    .await
    .unwrap();
}
