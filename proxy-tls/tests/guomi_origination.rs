//! Guomi (RFC 8998) origination from config: a cluster whose `tls` transport has a
//! `guomi` section reaches a Tongsuo (BabaSSL) server that speaks only
//! TLS_SM4_GCM_SM3, curveSM2 and sm2sig_sm3 (from `scripts/deps/proxy-tls-guomi.sh`;
//! else `SKIPPED:`), Guomi alone with an SM2 client certificate and side by side
//! with the international suites; an SM2 CA given as the international `roots` is
//! refused at load naming the field.

#![cfg(feature = "guomi")]
#![allow(clippy::unwrap_used)]

use crate::common;
use crate::tongsuo;

use std::{
    io::{BufRead, BufReader, Read, Write},
    process::{Child, Stdio},
    sync::mpsc,
    time::Duration,
};

use common::registry;
use proxy_test_support::{server::load_error, yaml, TestServer};

const REPLY: &str = "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello guomi";

/// A Tongsuo server (one connection) with the SM2 `pki`, requiring an SM2 client
/// certificate when `verify_client`; its port and a reader of its whole output.
fn tongsuo_server(
    python: &proxy_test_support::python::Python,
    dir: &std::path::Path,
    verify_client: bool,
) -> (Child, u16, mpsc::Receiver<String>) {
    let path = |f: &str| dir.join(f).display().to_string();
    let mut cmd = tongsuo::python_cmd(python);
    cmd.args([
        "server",
        "--cert",
        &path("server.pem"),
        "--key",
        &path("server.key"),
        "--ca",
        &path("ca.pem"),
        "--reply",
        REPLY,
        "--timeout",
        "30",
    ]);
    if verify_client {
        cmd.arg("--verify-client");
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (port_tx, port_rx) = mpsc::channel();
    let (all_tx, all_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout);
        let mut seen = String::new();
        let mut line = String::new();
        while lines.read_line(&mut line).unwrap_or(0) > 0 {
            if let Some(p) = line.trim().strip_prefix("PORT ") {
                let _ = port_tx.send(p.parse::<u16>().unwrap());
            }
            seen.push_str(&line);
            line.clear();
        }
        let _ = all_tx.send(seen);
    });
    let port = port_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the tongsuo server did not print its port");
    (child, port, all_rx)
}

/// A proxy with a plain HTTP listener routing to one cluster at `port` whose `tls`
/// transport is `transport` (YAML flow text).
fn proxy_yaml(port: u16, transport: &str) -> String {
    yaml::config(
        &[yaml::listener("plain", "guomi", &[])],
        &[yaml::cluster(
            "guomi",
            &[format!("127.0.0.1:{port}")],
            &[&format!(
                "transport:\n      typed: tls\n      config: {transport}"
            )],
        )],
    )
}

fn get(port: u16) -> String {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    c.write_all(b"GET /sm HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn through_the_proxy(suites: &str, verify_client: bool) {
    let Some(python) = tongsuo::tongsuo_python() else {
        return;
    };
    let pki = tongsuo::Pki::new(&format!("origination-{suites}"));
    let (mut child, port, output) = tongsuo_server(&python, &pki.dir, verify_client);
    let client_cert = if verify_client {
        format!(
            ", client_cert: {{ cert: {}, key: {} }}",
            pki.path("client.pem"),
            pki.path("client.key")
        )
    } else {
        String::new()
    };
    let transport = format!(
        "{{ server_name: localhost, guomi: {{ suites: {suites}, roots: {{ files: [{}] }}{client_cert} }} }}",
        pki.path("ca.pem")
    );
    let runtime = proxy_tls::TlsRuntime::default();
    let proxy = TestServer::start(&proxy_yaml(port, &transport), registry(runtime.clone()));
    let page = get(proxy.port("plain"));
    let seen = output
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    eprintln!("tongsuo server ({suites}):\n{seen}\nproxy answered:\n{page}");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.ends_with("hello guomi"), "{page}");
    assert!(seen.contains("VERSION TLSv1.3"), "{seen}");
    assert!(seen.contains("CIPHER TLS_SM4_GCM_SM3"), "{seen}");
    assert!(seen.contains("RECEIVED GET /sm HTTP/1.1"), "{seen}");
    if verify_client {
        // The proxy signed its CertificateVerify with SM2-SM3, and Tongsuo verified
        // its SM2 client certificate.
        for line in tongsuo::SM2_SIGNED {
            assert!(seen.contains(line), "{seen}");
        }
        assert!(
            seen.contains("PEER_CERT") && seen.contains("VERIFY_RESULT 0"),
            "{seen}"
        );
    }
    let mut text = String::new();
    runtime.metrics().render(&mut text);
    assert!(
        text.contains("proxy_tls_upstream_handshakes_total 1"),
        "{text}"
    );
}

/// `guomi: { suites: only, roots, client_cert }`: Guomi alone, mutual TLS with SM2.
#[test]
fn a_cluster_reaches_a_tongsuo_server_with_guomi_only_and_an_sm2_client_certificate() {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        through_the_proxy("only", true);
        let _ = tx.send(());
    });
    rx.recv_timeout(tongsuo::TEST_TIMEOUT)
        .expect("the test timed out or failed (see above)");
}

/// `guomi: { roots }` (side by side, the default): the Guomi suites come first, so
/// a Guomi-only server answers with SM4.
#[test]
fn a_cluster_reaches_a_tongsuo_server_with_guomi_side_by_side() {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        through_the_proxy("side_by_side", false);
        let _ = tx.send(());
    });
    rx.recv_timeout(tongsuo::TEST_TIMEOUT)
        .expect("the test timed out or failed (see above)");
}

/// An SM2 CA is of no use to the international (webpki) verifier: given as `roots`
/// it is refused at load, naming the field and pointing to `guomi.roots`; the same
/// file as `guomi.roots` loads (side by side, `roots` then holds the other CAs).
#[test]
fn an_sm2_ca_as_international_roots_is_refused_naming_the_field() {
    let pki = tongsuo::Pki::new("sm2-in-roots");
    let ca = pki.path("ca.pem");
    let international = proxy_test_support::pki::Pki::new("sm2-in-roots-intl");
    let refused = load_error(
        &proxy_yaml(
            9,
            &format!("{{ server_name: localhost, roots: {{ files: [{ca}] }} }}"),
        ),
        registry(Default::default()),
    )
    .expect("an SM2 CA as international roots was accepted");
    assert!(
        refused.contains(&format!(
            "clusters[0].transport.config.roots.files[0]: {ca}: no usable root certificate: \
             certificate 0 has an SM2 (Guomi) key"
        )),
        "{refused}"
    );
    assert!(refused.contains("guomi.roots"), "{refused}");
    // Side by side with the Guomi section it is still refused as `roots`.
    let refused = load_error(
        &proxy_yaml(
            9,
            &format!("{{ roots: {{ files: [{ca}] }}, guomi: {{ roots: {{ files: [{ca}] }} }} }}"),
        ),
        registry(Default::default()),
    )
    .unwrap();
    assert!(
        refused.contains("clusters[0].transport.config.roots.files[0]: "),
        "{refused}"
    );
    // Where it belongs, it loads.
    let ok = load_error(
        &proxy_yaml(
            9,
            &format!(
                "{{ roots: {{ files: [{}] }}, guomi: {{ roots: {{ files: [{ca}] }} }} }}",
                international.ca_pem.display()
            ),
        ),
        registry(Default::default()),
    );
    assert_eq!(ok, None);
    // Guomi mistakes name their field.
    for (guomi, want) in [
        (
            "{ roots: webpki }",
            "clusters[0].transport.config.guomi.roots: SM2 roots come from files or a secret",
        ),
        (
            "{ roots: { files: [] } }",
            "clusters[0].transport.config.guomi.roots.files: at least one file is required",
        ),
        (
            "{ roots: { files: [/nonexistent/sm2.pem] } }",
            "clusters[0].transport.config.guomi.roots.files[0]: cannot read /nonexistent/sm2.pem",
        ),
        (
            "{ roots: { secret: x }, suites: both }",
            "clusters[0].transport.config.guomi.suites: unknown variant `both`",
        ),
    ] {
        let err = load_error(
            &proxy_yaml(9, &format!("{{ guomi: {guomi} }}")),
            registry(Default::default()),
        )
        .unwrap_or_default();
        assert!(err.contains(want), "{guomi}: {err}");
    }
    let err = load_error(
        &proxy_yaml(
            9,
            &format!("{{ versions: [tls12], guomi: {{ roots: {{ files: [{ca}] }} }} }}"),
        ),
        registry(Default::default()),
    )
    .unwrap_or_default();
    assert!(
        err.contains("clusters[0].transport.config.versions: guomi needs tls13"),
        "{err}"
    );
}

/// The SM2 recipe of the README (OpenSSL 3's command line, SM3 with the default SM2
/// identifier, a 10-year root and an 825-day leaf): the chain it makes is verified by
/// the Guomi origination against a Tongsuo server serving it.
#[test]
fn a_chain_made_by_the_readme_recipe_verifies() {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        readme_recipe();
        let _ = tx.send(());
    });
    rx.recv_timeout(tongsuo::TEST_TIMEOUT)
        .expect("the test timed out or failed (see above)");
}

fn readme_recipe() {
    let Some(python) = tongsuo::tongsuo_python() else {
        return;
    };
    let dir = proxy_test_support::temp::TempDir::new("sm2-recipe");
    let openssl = |args: &[&str]| {
        std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if !openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:SM2",
        "-out",
        "ca.key",
    ]) {
        eprintln!("SKIPPED: no openssl with SM2; the README's SM2 recipe was not checked");
        return;
    }
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=DNS:api.example.com\n",
    )
    .unwrap();
    for step in [
        &[
            "req",
            "-new",
            "-x509",
            "-key",
            "ca.key",
            "-sm3",
            "-sigopt",
            "distid:1234567812345678",
            "-days",
            "3650",
            "-subj",
            "/C=CN/O=Example/CN=Example SM2 Root",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            "ca.pem",
        ][..],
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:SM2",
            "-out",
            "server.key",
        ],
        &[
            "req",
            "-new",
            "-key",
            "server.key",
            "-sm3",
            "-sigopt",
            "distid:1234567812345678",
            "-subj",
            "/C=CN/O=Example/CN=api.example.com",
            "-out",
            "server.csr",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-sm3",
            "-sigopt",
            "distid:1234567812345678",
            "-vfyopt",
            "distid:1234567812345678",
            "-days",
            "825",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    ] {
        assert!(openssl(step), "openssl {step:?} failed");
    }
    let (mut child, port, output) = tongsuo_server(&python, dir.path(), false);
    let transport = format!(
        "{{ server_name: api.example.com, guomi: {{ suites: only, roots: {{ files: [{}] }} }} }}",
        dir.join("ca.pem").display()
    );
    let proxy = TestServer::start(&proxy_yaml(port, &transport), registry(Default::default()));
    let page = get(proxy.port("plain"));
    let seen = output
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    eprintln!("tongsuo server (README recipe):\n{seen}\nproxy answered:\n{page}");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(seen.contains("CIPHER TLS_SM4_GCM_SM3"), "{seen}");
}
