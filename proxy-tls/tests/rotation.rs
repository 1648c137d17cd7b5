//! Live rotation: certificates swapped while requests run (no request fails, new
//! handshakes show the new certificate, old connections close only after their
//! drain time), secrets from a `SecretSource`, and bad material refused with the
//! running material kept.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use common::*;
use proxy_test_support::{
    pki::{Issued, Pki},
    TestServer, Upstream,
};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

fn connector(ca: &std::path::Path) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).unwrap();
    for c in proxy_tls::material::parse_certs(&pem, "ca").unwrap() {
        roots.add(c).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    // Full handshakes only: a resumed session reports the certificate of the
    // session it resumes.
    let mut config = config;
    config.resumption = rustls::client::Resumption::disabled();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn connect(c: &tokio_rustls::TlsConnector, port: u16) -> (Tls, CertificateDer<'static>) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let tls = c
        .connect(ServerName::try_from("a.test").unwrap(), tcp)
        .await
        .unwrap();
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned();
    (tls, leaf)
}

/// One keep-alive request: `Ok(close)` where `close` tells the server ended the
/// connection after this answer.
async fn request(tls: &mut Tls) -> Result<bool, String> {
    tls.write_all(b"GET /load HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            if !head.starts_with("http/1.1 200") {
                return Err(format!("status: {head}"));
            }
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            while buf.len() < end + 4 + len {
                let n = tls
                    .read(&mut chunk)
                    .await
                    .map_err(|e| format!("body: {e}"))?;
                if n == 0 {
                    return Err("eof in body".into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok(head.contains("connection: close"));
        }
        let n = tls
            .read(&mut chunk)
            .await
            .map_err(|e| format!("head: {e}"))?;
        if n == 0 {
            return Err("eof before an answer".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn write_pair(to: &Issued, from: &Issued) {
    // Key first, then the certificate: a poll in between sees a mismatch and keeps
    // the running pair, the next one applies both.
    let tmp = to.key.with_extension("tmp");
    std::fs::write(&tmp, &from.key_pem).unwrap();
    std::fs::rename(&tmp, &to.key).unwrap();
    let tmp = to.cert.with_extension("tmp");
    std::fs::write(&tmp, &from.cert_pem).unwrap();
    std::fs::rename(&tmp, &to.cert).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_under_load_without_failed_requests() {
    let pki = Pki::new("rotation-load");
    let live = pki.server("live", &["a.test"]);
    let next = pki.server("next", &["a.test"]);
    let drain = Duration::from_millis(600);
    let tls = format!(
        "{{ certificates: [{{ cert: {}, key: {} }}], rotation: {{ poll_interval: 50ms, drain: 600ms }} }}",
        live.cert.display(),
        live.key.display()
    );
    let runtime = proxy_tls::TlsRuntime::default();
    let up = Upstream::head_echo();
    let server = TestServer::start(&proxy_yaml(up.addr, &tls, ""), registry(runtime.clone()));
    let port = server.port("tls");
    let conn = connector(&pki.ca_pem);
    let old_leaf = connect(&conn, port).await.1;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    // (time the server closed an old-material connection)
    let retired_at = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (conn, stop, ok, failures, retired_at, old_leaf) = (
            conn.clone(),
            stop.clone(),
            ok.clone(),
            failures.clone(),
            retired_at.clone(),
            old_leaf.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut requests = 0;
            while !stop.load(Ordering::Relaxed) && requests < 20_000 {
                let (mut tls, leaf) = connect(&conn, port).await;
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    requests += 1;
                    match request(&mut tls).await {
                        Ok(false) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(true) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            if leaf == old_leaf {
                                retired_at.lock().unwrap().push(Instant::now());
                            }
                            break; // reconnect: a new handshake
                        }
                        Err(e) => {
                            failures.lock().unwrap().push(e);
                            break;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }));
    }

    tokio::time::timeout(Duration::from_secs(20), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before_swap = ok.load(Ordering::Relaxed);
        assert!(before_swap > 0, "no request completed before the swap");
        let written_at = Instant::now();
        write_pair(&live, &next);
        // New handshakes show the new certificate soon after (poll interval 50ms).
        loop {
            let (_, leaf) = connect(&conn, port).await;
            if leaf != old_leaf {
                assert_eq!(
                    leaf.as_ref(),
                    CertificateDer::from_pem_slice(next.cert_pem.as_bytes())
                        .unwrap()
                        .as_ref()
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Old connections keep serving, then are retired after the drain.
        tokio::time::sleep(drain + Duration::from_millis(600)).await;
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.await.unwrap();
        }
        let retired = retired_at.lock().unwrap().clone();
        assert!(!retired.is_empty(), "old connections were never retired");
        for t in &retired {
            // Retired no earlier than the drain after the swap (which came after the
            // files were written).
            assert!(
                *t >= written_at + drain,
                "an old connection closed {:?} after the new files, before its drain",
                t.saturating_duration_since(written_at)
            );
        }
    })
    .await
    .unwrap();
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(
        ok.load(Ordering::Relaxed) > 100,
        "too few requests: {}",
        ok.load(Ordering::Relaxed)
    );
    assert!(runtime.metrics().rotations_applied() >= 1);
}

use rustls::pki_types::pem::PemObject;

#[tokio::test]
async fn secrets_rotate_and_bad_material_is_refused() {
    let pki = Pki::new("rotation-secrets");
    let first = pki.server("first", &["a.test"]);
    let second = pki.server("second", &["a.test"]);
    let secrets = Arc::new(proxy_tls::rotation::MemorySecrets::default());
    secrets.set(
        "web",
        proxy_tls::rotation::Secret::key_pair(first.cert_pem.clone(), first.key_pem.clone()),
    );
    let runtime = proxy_tls::TlsRuntime::with_secrets(secrets.clone());
    let tls = "{ certificates: [{ secret: web }], rotation: { drain: 5s } }";
    let up = Upstream::head_echo();
    let server = TestServer::start(&proxy_yaml(up.addr, tls, ""), registry(runtime.clone()));
    let port = server.port("tls");
    let conn = connector(&pki.ca_pem);
    let der = |i: &Issued| CertificateDer::from_pem_slice(i.cert_pem.as_bytes()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        let (mut old, leaf) = connect(&conn, port).await;
        assert_eq!(leaf, der(&first));
        assert_eq!(request(&mut old).await, Ok(false));

        // `set` rebuilds before it returns: the next handshake has the new one.
        secrets.set(
            "web",
            proxy_tls::rotation::Secret::key_pair(second.cert_pem.clone(), second.key_pem.clone()),
        );
        assert_eq!(connect(&conn, port).await.1, der(&second));
        // The old connection keeps working within its drain time.
        assert_eq!(request(&mut old).await, Ok(false));

        // A mismatched pair, an expired certificate, garbage, a removed secret: refused,
        // the second pair stays.
        secrets.set(
            "web",
            proxy_tls::rotation::Secret::key_pair(first.cert_pem.clone(), second.key_pem.clone()),
        );
        let expired = pki.expired_client("expired");
        secrets.set(
            "web",
            proxy_tls::rotation::Secret::key_pair(
                expired.cert_pem.clone(),
                expired.key_pem.clone(),
            ),
        );
        secrets.set(
            "web",
            proxy_tls::rotation::Secret::key_pair("garbage", "garbage"),
        );
        secrets.remove("web");
        assert_eq!(runtime.metrics().rotations_refused(), 4);
        assert_eq!(connect(&conn, port).await.1, der(&second));
    })
    .await
    .unwrap();
}

#[test]
fn refused_files_are_named_with_the_reason() {
    let pki = Pki::new("rotation-files");
    let live = pki.server("live", &["a.test"]);
    let other = pki.server("other", &["a.test"]);
    let cfg: proxy_tls::TerminationConfig = proxy_core::config::from_yaml(&format!(
        "{{ certificates: [{{ cert: {}, key: {} }}], rotation: {{ watch_files: false }} }}",
        live.cert.display(),
        live.key.display()
    ))
    .unwrap();
    let runtime = proxy_tls::TlsRuntime::default();
    let metrics = runtime.metrics().clone();
    let layer = proxy_tls::TerminationLayer::new(&cfg, &runtime).unwrap();
    let chain = |e: proxy_tls::ConfigBuildError| proxy_core::DisplayChain(&e).to_string();

    // Each refusal names the field and the file.
    std::fs::write(&live.key, &other.key_pem).unwrap();
    let err = chain(layer.reload().unwrap_err());
    assert!(
        err.starts_with(&format!(
            "certificates[0].key: {}: private key does not match the certificate in {}",
            live.key.display(),
            live.cert.display()
        )),
        "{err}"
    );

    std::fs::write(&live.cert, "not a certificate").unwrap();
    let err = chain(layer.reload().unwrap_err());
    assert!(
        err.starts_with(&format!(
            "certificates[0].cert: {}: no certificate found",
            live.cert.display()
        )),
        "{err}"
    );

    std::fs::remove_file(&live.cert).unwrap();
    let err = chain(layer.reload().unwrap_err());
    assert!(
        err.starts_with(&format!(
            "certificates[0].cert: cannot read {}: ",
            live.cert.display()
        )),
        "{err}"
    );

    let expired = pki.expired_client("expired");
    std::fs::write(&live.cert, &expired.cert_pem).unwrap();
    std::fs::write(&live.key, &expired.key_pem).unwrap();
    let err = chain(layer.reload().unwrap_err());
    assert!(
        err.starts_with(&format!(
            "certificates[0].cert: {}: certificate expired at",
            live.cert.display()
        )),
        "{err}"
    );

    assert_eq!(metrics.rotations_refused(), 4);
    assert_eq!(metrics.rotations_applied(), 0);

    // And at load: the config is refused naming the file.
    let fresh = pki.server("fresh", &["a.test"]);
    let cfg: proxy_tls::TerminationConfig = proxy_core::config::from_yaml(&format!(
        "{{ certificates: [{{ cert: {}, key: {} }}] }}",
        fresh.cert.display(),
        other.key.display()
    ))
    .unwrap();
    let err = proxy_tls::TerminationLayer::new(&cfg, &runtime).unwrap_err();
    assert_eq!(err.field(), "certificates[0].key");
    assert!(chain(err).contains("private key does not match"));
}

#[tokio::test]
async fn http2_connections_get_goaway_after_the_drain() {
    use http_body_util::{BodyExt, Empty};
    let pki = Pki::new("rotation-h2");
    let first = pki.server("first", &["a.test"]);
    let second = pki.server("second", &["a.test"]);
    let secrets = Arc::new(proxy_tls::rotation::MemorySecrets::default());
    let pair =
        |i: &Issued| proxy_tls::rotation::Secret::key_pair(i.cert_pem.clone(), i.key_pem.clone());
    secrets.set("web", pair(&first));
    let runtime = proxy_tls::TlsRuntime::with_secrets(secrets.clone());
    let tls = "{ certificates: [{ secret: web }], rotation: { drain: 400ms } }";
    let up = Upstream::head_echo();
    let server = TestServer::start(&proxy_yaml(up.addr, tls, ""), registry(runtime));
    let port = server.port("tls");

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(
            proxy_tls::material::parse_certs(&std::fs::read(&pki.ca_pem).unwrap(), "ca").unwrap()
                [0]
            .clone(),
        )
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("a.test").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    let conn_task = tokio::spawn(conn);
    let get = |sender: &mut hyper::client::conn::http2::SendRequest<Empty<bytes::Bytes>>| {
        let req = http::Request::get(format!("https://a.test:{port}/h2"))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        sender.send_request(req)
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        let resp = get(&mut sender).await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.into_body().collect().await.unwrap();
        secrets.set("web", pair(&second));
        let swapped = Instant::now();
        // Within the drain the connection serves on.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let resp = get(&mut sender).await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.into_body().collect().await.unwrap();
        // After it: GOAWAY, and the connection ends.
        conn_task.await.unwrap().unwrap();
        let closed_after = swapped.elapsed();
        assert!(
            closed_after >= Duration::from_millis(400),
            "closed after {closed_after:?}"
        );
        assert!(
            closed_after < Duration::from_secs(3),
            "closed after {closed_after:?}"
        );
    })
    .await
    .unwrap();
}

/// A config loaded from a file names its certificates relative to the file: they are
/// read, and watched, there (the working directory is elsewhere).
#[tokio::test]
async fn relative_certificate_files_rotate_from_the_config_files_directory() {
    let pki = Pki::new("rotation-relative");
    let first = pki.server("first", &["a.test"]);
    let second = pki.server("second", &["a.test"]);
    let live = pki.server("live", &["a.test"]);
    write_pair(&live, &first);
    let tls =
        "{ certificates: [{ cert: live.pem, key: live.key }], rotation: { poll_interval: 50ms } }";
    let file = pki.dir.join("proxy.yaml");
    let up = Upstream::head_echo();
    std::fs::write(&file, proxy_yaml(up.addr, tls, "")).unwrap();
    assert_ne!(std::env::current_dir().unwrap(), pki.dir);
    let config = proxy_core::config::Config::load(&file).unwrap();
    let server = proxy_core::Server::new(config, registry(Default::default())).unwrap();
    let server = TestServer::run(server).unwrap();
    let port = server.port("tls");
    let der = |i: &Issued| CertificateDer::from_pem_slice(i.cert_pem.as_bytes()).unwrap();
    let conn = connector(&pki.ca_pem);
    tokio::time::timeout(Duration::from_secs(10), async {
        assert_eq!(connect(&conn, port).await.1, der(&first));
        write_pair(&live, &second);
        while connect(&conn, port).await.1 != der(&second) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    drop(server);
}
