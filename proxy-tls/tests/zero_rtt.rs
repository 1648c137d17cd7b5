//! 0-RTT: off by default; when on, served only for safe idempotent requests on a
//! single-use ticket; a replayed flight gets no early data through.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    sync::Arc,
    time::Duration,
};

use rustls::{pki_types::ServerName, ClientConfig, ClientConnection};

use common::*;
use proxy_test_support::{pki::Pki, TestServer, Upstream};

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
    let up = Upstream::head_echo();
    let proxy = TestServer::start(&proxy_yaml(up.addr, &tls, ""), registry(Default::default()));
    let port = proxy.port("tls");
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
            proxy_tls::material::parse_certs(&std::fs::read(&pki.ca_pem).unwrap(), "ca").unwrap()
                [0]
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
    // An upstream answering each request with its head, and recording it.
    let upstream = Upstream::head_echo();
    let replays = || {
        (upstream.requests().iter())
            .filter(|r| r.head().starts_with("GET /replay"))
            .count()
    };
    let tls = format!(
        "{{ certificates: [{{ cert: {}, key: {} }}], early_data: {{}}, handshake_timeout: 1s }}",
        srv.cert.display(),
        srv.key.display()
    );
    let runtime = proxy_tls::TlsRuntime::default();
    let proxy = TestServer::start(
        &proxy_yaml(upstream.addr, &tls, ""),
        registry(runtime.clone()),
    );
    let port = proxy.port("tls");

    let config = client(&pki);

    let get =
        |path: &str| format!("GET {path} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
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
    assert_eq!(replays(), 1);

    // Replaying that flight byte for byte on a new connection: the ticket was
    // used, so no early data is accepted and nothing reaches the upstream.
    let mut raw = TcpStream::connect(("127.0.0.1", port)).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    raw.write_all(&early.first_flight).unwrap();
    let mut sink = Vec::new();
    let _ = raw.read_to_end(&mut sink);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        replays(),
        1,
        "a replayed 0-RTT request reached the upstream"
    );

    // A POST in 0-RTT is refused with 425 Too Early; the upstream never sees it.
    let post =
        "POST /pay HTTP/1.1\r\nHost: a.test\r\ncontent-length: 2\r\nConnection: close\r\n\r\nhi";
    let refused = attempt(&config, port, post.as_bytes());
    // (The first connection left two tickets; this uses the second.)
    assert!(refused.early_accepted, "the second ticket was not usable");
    assert!(
        refused.response.starts_with("HTTP/1.1 425 Too Early"),
        "{}",
        refused.response
    );
    assert!(!upstream
        .requests()
        .iter()
        .any(|r| r.head().starts_with("POST /pay")));
    assert_eq!(runtime.metrics().failures("early_data_refused"), 1);
}
