//! A proxy assembled entirely in code (`examples/code_only.rs`: no YAML, no
//! registry) with proxy-tls termination, a proxy-lb balancer, a proxy-filters filter
//! and tower-http layers, proxying real requests over TLS from a real client.

#[path = "../examples/code_only.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
mod example;

use std::{collections::HashSet, sync::Arc, time::Duration};

use http_body_util::BodyExt;
use proxy_test_support::pki::Pki;

#[tokio::test(flavor = "current_thread")]
async fn proxy_built_in_code_serves_tls_requests() {
    tokio::time::timeout(Duration::from_secs(60), run())
        .await
        .expect("test timed out");
}

async fn run() {
    let upstreams = example::demo_upstreams().await.expect("upstreams");
    let pki = Pki::new("code-only");
    let cert = pki.server("localhost", &["localhost"]);
    let listener = example::tls_listener(
        "127.0.0.1:0".parse().expect("addr"),
        cert.cert_pem.clone(),
        cert.key_pem.clone(),
    )
    .expect("listener");
    let addr = listener.local_addr();
    let stack = example::request_stack(&upstreams).expect("stack");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(listener.serve(stack, async {
        let _ = stopped.await;
    }));

    // A TLS client trusting the throwaway CA, over HTTP/1.1 keep-alive.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_cert_der().into()).expect("root");
    let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect("localhost".try_into().expect("name"), tcp)
        .await
        .expect("handshake");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .expect("h1 handshake");
    tokio::spawn(conn);

    let mut seen = HashSet::new();
    for i in 0..20 {
        let req = http::Request::get(format!("/hello/{i}"))
            .header("host", "localhost")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .expect("request");
        let resp = sender.send_request(req).await.expect("response");
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["server"],
            "code-only-proxy",
            "tower-http layer ran"
        );
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&body).into_owned();
        assert!(
            text.ends_with("x-assembled=in-code\n"),
            "the filter's header reached the upstream: {text}"
        );
        seen.insert(text);
    }
    assert_eq!(seen.len(), 2, "the balancer used both upstreams: {seen:?}");

    let _ = stop.send(());
    server.await.expect("server task");
}
