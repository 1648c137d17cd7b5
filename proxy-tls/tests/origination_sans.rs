//! TLS origination with subject-alt-name matchers against `openssl s_server`: the
//! chain is verified against the roots, then a SAN must match (a SPIFFE URI, a DNS
//! name), whatever the address dialled; a certificate of another CA is refused even
//! when its SANs match.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use common::*;
use proxy_test_support::{
    pki::{new_key, Pki},
    tools::installed,
};
use proxy_tls::{config::OriginationConfig, OriginationTransport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn transport(yaml: &str) -> OriginationTransport {
    let cfg: OriginationConfig = proxy_core::config::from_yaml(yaml).unwrap();
    OriginationTransport::new(&cfg, &proxy_tls::TlsRuntime::default()).unwrap()
}

/// `Ok(page)` or the class of the failed handshake.
async fn fetch(t: &OriginationTransport, port: u16) -> Result<String, &'static str> {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = t.connect(tcp, addr).await.map_err(|e| e.class())?;
    tls.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await.unwrap();
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn serve(cert: &proxy_test_support::pki::Issued) -> SServer {
    s_server(&[
        "-cert",
        &cert.cert.display().to_string(),
        "-key",
        &cert.key.display().to_string(),
        "-www",
    ])
}

#[tokio::test]
async fn a_matching_san_is_required_instead_of_the_server_name() {
    if !installed("openssl") {
        eprintln!("skipped: openssl is not installed (scripts/install-test-deps.sh)");
        return;
    }
    let pki = Pki::new("orig-sans");
    let spiffe = "spiffe://cluster.local/ns/shop/sa/cart";
    let leaf = pki.issue("cart", &["cart.shop.svc"], &[spiffe], new_key(), None);
    let server = serve(&leaf);
    let roots = format!("roots: {{ files: [{}] }}", pki.ca_pem.display());
    tokio::time::timeout(Duration::from_secs(30), async {
        // Dialled by address: without matchers the IP is the name, and it is not in
        // the certificate.
        let by_ip = transport(&format!("{{ {roots} }}"));
        assert_eq!(fetch(&by_ip, server.port).await.unwrap_err(), "tls_bad_name");

        for matcher in [
            format!("{{uri: {{exact: \"{spiffe}\"}}}}"),
            "{uri: {prefix: \"spiffe://cluster.local/ns/shop/\"}}".to_owned(),
            "{uri: {regex: \"spiffe://[^/]+/ns/shop/sa/.*\"}}".to_owned(),
            "{dns: {exact: CART.shop.svc}}".to_owned(),
            "{dns: {suffix: .shop.svc}}".to_owned(),
        ] {
            let t = transport(&format!(
                "{{ {roots}, subject_alt_names: [{{dns: {{exact: nope}}}}, {matcher}] }}"
            ));
            let page = fetch(&t, server.port).await.unwrap();
            assert!(page.starts_with("HTTP/1.0 200 ok"), "{matcher}: {page}");
        }
        // A SNI name is still sent, and a name that is not a SAN does not matter.
        let t = transport(&format!(
            "{{ {roots}, server_name: outbound.mesh, subject_alt_names: [{{uri: {{suffix: /sa/cart}}}}] }}"
        ));
        assert!(fetch(&t, server.port).await.is_ok());

        // No SAN matches: refused as a wrong name.
        let t = transport(&format!(
            "{{ {roots}, subject_alt_names: [{{uri: {{exact: \"spiffe://cluster.local/ns/shop/sa/other\"}}}}, {{dns: {{prefix: cart.shop.svc.}}}}] }}"
        ));
        assert_eq!(fetch(&t, server.port).await.unwrap_err(), "tls_bad_name");
    })
    .await
    .unwrap();

    // The same SAN from another CA: the chain is still verified.
    let other = Pki::new("orig-sans-other");
    let forged = other.issue("forged", &["cart.shop.svc"], &[spiffe], new_key(), None);
    let forged_server = serve(&forged);
    tokio::time::timeout(Duration::from_secs(30), async {
        let t = transport(&format!(
            "{{ {roots}, subject_alt_names: [{{uri: {{exact: \"{spiffe}\"}}}}] }}"
        ));
        assert_eq!(
            fetch(&t, forged_server.port).await.unwrap_err(),
            "tls_unknown_issuer"
        );
    })
    .await
    .unwrap();
}

#[test]
fn san_matchers_need_verification() {
    let cfg: OriginationConfig = proxy_core::config::from_yaml(
        "{ verify: false, subject_alt_names: [{uri: {exact: \"spiffe://td/x\"}}] }",
    )
    .unwrap();
    assert_eq!(
        OriginationTransport::try_from(&cfg).unwrap_err().field(),
        "subject_alt_names"
    );
    let bad: Result<OriginationConfig, _> =
        proxy_core::config::from_yaml("{ subject_alt_names: [{email: {exact: a@b}}] }");
    assert!(bad.is_err());
}
