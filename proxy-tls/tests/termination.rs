//! TLS termination against real third-party clients (`openssl s_client`, `curl`):
//! TLS 1.2 and 1.3, ALPN h2, SNI picking between two certificates, mutual TLS
//! accepted with a good client certificate and refused without one or with an
//! expired one, and bad input (garbage, a stalled handshake) ending only that
//! connection with a metric by reason.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "../src/guomi/test_pki.rs"]
mod test_pki;

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

mod zero_rtt {
    //! 0-RTT: off by default; when on, served only for safe idempotent requests on a
    //! single-use ticket; a replayed flight gets no early data through.

    use std::{
        io::{Read, Write},
        net::TcpStream,
        sync::{
            atomic::{AtomicUsize, Ordering},
            Arc, Mutex,
        },
        time::Duration,
    };

    use rustls::{pki_types::ServerName, ClientConfig, ClientConnection};

    use super::common::*;

    /// Records what the client writes before it first reads: its first flight.
    struct Recording<'a> {
        sock: &'a mut TcpStream,
        first_flight: &'a mut Vec<u8>,
        read_yet: bool,
    }

    impl Read for Recording<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.read_yet = true;
            self.sock.read(buf)
        }
    }

    impl Write for Recording<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.sock.write(buf)?;
            if !self.read_yet {
                self.first_flight.extend_from_slice(&buf[..n]);
            }
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.sock.flush()
        }
    }

    struct Attempt {
        early_accepted: bool,
        response: String,
        first_flight: Vec<u8>,
    }

    fn attempt(config: &Arc<ClientConfig>, port: u16, request: &[u8]) -> Attempt {
        let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut conn =
            ClientConnection::new(config.clone(), ServerName::try_from("a.test").unwrap()).unwrap();
        let mut sent_early = false;
        if let Some(mut early) = conn.early_data() {
            early.write_all(request).unwrap();
            sent_early = true;
        }
        let mut first_flight = Vec::new();
        let mut rec = Recording {
            sock: &mut sock,
            first_flight: &mut first_flight,
            read_yet: false,
        };
        while conn.is_handshaking() {
            conn.complete_io(&mut rec).unwrap();
        }
        let early_accepted = sent_early && conn.is_early_data_accepted();
        if !early_accepted {
            conn.writer().write_all(request).unwrap();
        }
        let mut out = Vec::new();
        let mut stream = rustls::Stream::new(&mut conn, &mut sock);
        let _ = stream.read_to_end(&mut out);
        Attempt {
            early_accepted,
            response: String::from_utf8_lossy(&out).into_owned(),
            first_flight,
        }
    }

    #[test]
    fn early_data_is_off_by_default() {
        let pki = Pki::new("zero-rtt-off");
        let srv = pki.server("srv", &["a.test"]);
        let tls = format!(
            "{{ certificates: [{{ cert: {}, key: {} }}] }}",
            srv.cert.display(),
            srv.key.display()
        );
        let proxy = start(
            &proxy_yaml(echo_upstream(), &tls, ""),
            registry(Default::default()),
        );
        let port = port_of(&proxy, "tls");
        let config = client(&pki);
        let get = "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n";
        assert!(!attempt(&config, port, get.as_bytes()).early_accepted);
        let second = attempt(&config, port, get.as_bytes());
        assert!(!second.early_accepted, "0-RTT accepted while off");
        assert!(
            second.response.starts_with("HTTP/1.1 200"),
            "{}",
            second.response
        );
    }

    fn client(pki: &Pki) -> Arc<ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(
                proxy_tls::material::parse_certs(&std::fs::read(&pki.ca_pem).unwrap(), "ca")
                    .unwrap()[0]
                    .clone(),
            )
            .unwrap();
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.enable_early_data = true;
        Arc::new(config)
    }

    #[test]
    fn early_data_is_single_use_and_idempotent_only() {
        let pki = Pki::new("zero-rtt");
        let srv = pki.server("srv", &["a.test"]);
        let replays = Arc::new(AtomicUsize::new(0));
        let seen = replays.clone();
        let heads = Arc::new(Mutex::new(Vec::<String>::new()));
        let log = heads.clone();
        // An upstream counting the requests it gets, answering each with its head.
        let upstream = upstream(move |mut s| {
            let seen = seen.clone();
            let log = log.clone();
            async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head: Vec<u8> = buf.drain(..end + 4).collect();
                        let text = String::from_utf8_lossy(&head).into_owned();
                        if text.starts_with("GET /replay") {
                            seen.fetch_add(1, Ordering::SeqCst);
                        }
                        log.lock().unwrap().push(text);
                        let mut resp =
                            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", head.len())
                                .into_bytes();
                        resp.extend_from_slice(&head);
                        if s.write_all(&resp).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let tls = format!(
            "{{ certificates: [{{ cert: {}, key: {} }}], early_data: {{ enabled: true }}, handshake_timeout: 1s }}",
            srv.cert.display(),
            srv.key.display()
        );
        let runtime = proxy_tls::TlsRuntime::default();
        let proxy = start(&proxy_yaml(upstream, &tls, ""), registry(runtime.clone()));
        let port = port_of(&proxy, "tls");

        let config = client(&pki);

        let get = |path: &str| {
            format!("GET {path} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        };
        // A full handshake first: it leaves the client a (single-use) ticket.
        let first = attempt(&config, port, get("/first").as_bytes());
        assert!(!first.early_accepted);
        assert!(
            first.response.starts_with("HTTP/1.1 200"),
            "{}",
            first.response
        );

        // A GET in 0-RTT is served.
        let early = attempt(&config, port, get("/replay").as_bytes());
        assert!(early.early_accepted, "0-RTT not accepted");
        assert!(
            early.response.starts_with("HTTP/1.1 200"),
            "{}",
            early.response
        );
        assert_eq!(replays.load(Ordering::SeqCst), 1);

        // Replaying that flight byte for byte on a new connection: the ticket was
        // used, so no early data is accepted and nothing reaches the upstream.
        let mut raw = TcpStream::connect(("127.0.0.1", port)).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        raw.write_all(&early.first_flight).unwrap();
        let mut sink = Vec::new();
        let _ = raw.read_to_end(&mut sink);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            replays.load(Ordering::SeqCst),
            1,
            "a replayed 0-RTT request reached the upstream"
        );

        // A POST in 0-RTT is refused with 425 Too Early; the upstream never sees it.
        let post = "POST /pay HTTP/1.1\r\nHost: a.test\r\ncontent-length: 2\r\nConnection: close\r\n\r\nhi";
        let refused = attempt(&config, port, post.as_bytes());
        // (The first connection left two tickets; this uses the second.)
        assert!(refused.early_accepted, "the second ticket was not usable");
        assert!(
            refused.response.starts_with("HTTP/1.1 425 Too Early"),
            "{}",
            refused.response
        );
        assert!(!heads
            .lock()
            .unwrap()
            .iter()
            .any(|h| h.starts_with("POST /pay")));
        assert_eq!(runtime.metrics().failures("early_data_refused"), 1);
    }
}

#[test]
fn sessions_resume_with_tickets_and_survive_a_config_reload() {
    if !have("openssl") {
        return;
    }
    let pki = Pki::new("resume");
    let a = pki.server("a", &["a.test"]);
    let tls = format!(
        "{{ certificates: [{{ cert: {}, key: {} }}] }}",
        a.cert.display(),
        a.key.display()
    );
    let yaml = proxy_yaml(echo_upstream(), &tls, "");
    let runtime = proxy_tls::TlsRuntime::default();
    let server = start(&yaml, registry(runtime.clone()));
    let port = port_of(&server, "tls");
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
            server
                .reload(proxy_core::config::Config::from_yaml(&yaml).unwrap())
                .unwrap();
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
    if !have("openssl") {
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

#[test]
fn bad_termination_configs_are_refused_naming_the_field() {
    let refuse = |yaml: &str| {
        let mut r = proxy_core::Registry::default();
        proxy_tls::register(&mut r);
        let full = proxy_yaml("127.0.0.1:1".parse().unwrap(), yaml, "");
        let err = proxy_core::Server::new(proxy_core::config::Config::from_yaml(&full).unwrap(), r)
            .err()
            .unwrap();
        proxy_core::DisplayChain(&err).to_string()
    };
    let pki = Pki::new("bad-config");
    let a = pki.server("a", &["a.test"]);
    let (c, k) = (a.cert.display(), a.key.display());
    let e = refuse("{ certificates: [] }");
    assert!(
        e.contains("network_filters[0].config: certificates: at least one certificate is required"),
        "{e}"
    );
    let e = refuse(&format!("{{ certificates: [{{ cert: {c} }}] }}"));
    assert!(
        e.contains("certificates[0]: give cert and key, or secret"),
        "{e}"
    );
    let e = refuse(&format!(
        "{{ certificates: [{{ cert: {c}, key: {k} }}], alpn: 3, bogus: 1 }}"
    ));
    assert!(
        e.contains("unknown field `bogus`") || e.contains("alpn"),
        "{e}"
    );
    let e = refuse(&format!(
        "{{ certificates: [{{ cert: {c}, key: {k} }}], handshake_timeout: soon }}"
    ));
    assert!(e.contains("handshake_timeout"), "{e}");
    let e = refuse(&format!(
        "{{ certificates: [{{ cert: {c}, key: {k} }}], client_auth: {{ roots: {ca} }}, guomi: {{ cert: {c}, key: {k} }} }}",
        ca = pki.ca_pem.display()
    ));
    assert!(
        e.contains("guomi.client_roots: required when client_auth is set"),
        "{e}"
    );
    let e = refuse(&format!(
        "{{ certificates: [{{ cert: {c}, key: {k} }}], early_data: {{ enabled: true }}, versions: [tls12] }}"
    ));
    assert!(
        e.contains("early_data.enabled: early data needs tls13"),
        "{e}"
    );
    let e = refuse(&format!("{{ certificates: [{{ cert: {c}, key: {k} }}], client_auth: {{ roots: /nonexistent/ca.pem }} }}"));
    assert!(e.contains("/nonexistent/ca.pem: unreadable"), "{e}");
}

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
    let server = start(
        &proxy_yaml(echo_upstream(), &tls, "{ typed: tls_facts }"),
        registry(runtime.clone()),
    );
    let port = port_of(&server, "tls");

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
