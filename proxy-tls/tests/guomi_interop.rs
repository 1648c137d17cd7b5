//! Guomi (RFC 8998) interop with an independent TLS stack: Tongsuo (BabaSSL),
//! from the `tongsuopy` wheel, driven through ctypes by
//! `tests/interop/tongsuo_peer.py`. TLS 1.3 with TLS_SM4_GCM_SM3, curveSM2
//! and sm2sig_sm3, both directions, mutual TLS, application data both ways.
//!
//! The wheel is installed by `scripts/deps/proxy-tls-guomi.sh`; without it the
//! tests print `SKIPPED:` and pass.

#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../src/guomi/test_pki.rs"]
mod test_pki;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use proxy_tls::guomi::{
    load_sm2_key, GuomiClientBuilder, GuomiServerBuilder, Sm2RootStore, CERT_SM2_ID,
    CURVE_SM2_GROUP, SM4_CCM_SM3, SM4_GCM_SM3,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use sm2::dsa::signature::Verifier;
use test_pki::{issue, Issued, Spec, CLIENT_AUTH, SERVER_AUTH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const TEST_TIMEOUT: Duration = Duration::from_secs(60);
/// What Tongsuo reports for a peer's sm2sig_sm3 CertificateVerify.
const SM2_SIGNED: [&str; 2] = ["PEER_SIGNATURE_TYPE SM2", "PEER_SIGNATURE_DIGEST SM3"];

/// A Python that can import tongsuopy: the deps script's venv, its
/// `--target` directory, or the system one. `None` (and a loud line) if none.
fn tongsuo_python() -> Option<(PathBuf, Option<PathBuf>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let dest = std::env::var_os("PROXY_TLS_GUOMI_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| target.join("test-deps/tongsuo-venv"));
    let candidates = [
        (dest.join("bin/python3"), None),
        (PathBuf::from("python3"), Some(dest.join("site"))),
        (PathBuf::from("python3"), None),
    ];
    for (python, path) in candidates {
        let mut cmd = Command::new(&python);
        cmd.args(["-c", "import tongsuopy"]);
        if let Some(p) = &path {
            cmd.env("PYTHONPATH", p);
        }
        if cmd.output().map(|o| o.status.success()).unwrap_or(false) {
            return Some((python, path));
        }
    }
    eprintln!(
        "SKIPPED: tongsuopy not installed (run scripts/deps/proxy-tls-guomi.sh); \
         the Guomi interop test with Tongsuo did not run"
    );
    None
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/tongsuo_peer.py")
}

fn python_cmd(python: &(PathBuf, Option<PathBuf>)) -> Command {
    let mut cmd = Command::new(&python.0);
    if let Some(p) = &python.1 {
        cmd.env("PYTHONPATH", p);
    }
    cmd.arg(script());
    cmd
}

/// CA, server (localhost) and client certificates, written as PEM.
struct Pki {
    dir: PathBuf,
    ca: Issued,
    server: Issued,
    client: Issued,
}

impl Pki {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("proxy-tls-guomi-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = issue(&Spec::ca("Guomi Test Root"), None);
        let server = issue(
            &Spec::leaf("localhost", &["localhost"], SERVER_AUTH),
            Some(&ca),
        );
        let client = issue(&Spec::leaf("guomi client", &[], CLIENT_AUTH), Some(&ca));
        for (file, text) in [
            ("ca.pem", ca.cert_pem()),
            ("server.pem", server.cert_pem()),
            ("server.key", server.key_pem()),
            ("client.pem", client.cert_pem()),
            ("client.key", client.key_pem()),
        ] {
            std::fs::write(dir.join(file), text).unwrap();
        }
        Self {
            dir,
            ca,
            server,
            client,
        }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).to_string_lossy().into_owned()
    }

    fn roots(&self) -> Arc<Sm2RootStore> {
        let mut roots = Sm2RootStore::new();
        roots.add(&self.ca.der).unwrap();
        Arc::new(roots)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn key_of(issued: &Issued) -> proxy_tls::guomi::Sm2SigningKey {
    load_sm2_key(&PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        issued.key_pkcs8(),
    )))
    .unwrap()
}

#[tokio::test]
async fn tongsuo_client_to_our_server() {
    let Some(python) = tongsuo_python() else {
        return;
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let pki = Pki::new("server");
        let config = GuomiServerBuilder::new(vec![pki.server.der.clone()], key_of(&pki.server))
            .unwrap()
            .client_auth(pki.roots(), true)
            .build()
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let client_der = pki.client.der.clone();

        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.unwrap();
            let (_, conn) = tls.get_ref();
            assert_eq!(conn.negotiated_cipher_suite().unwrap().suite(), SM4_GCM_SM3);
            assert_eq!(
                conn.negotiated_key_exchange_group().unwrap().name(),
                CURVE_SM2_GROUP
            );
            assert_eq!(
                conn.protocol_version(),
                Some(rustls::ProtocolVersion::TLSv1_3)
            );
            // Tongsuo sends the client certificate, and the root it chains to.
            let chain = conn.peer_certificates().unwrap();
            assert_eq!(chain[0], client_der, "the client certificate first");
            let mut buf = vec![0u8; 64];
            let n = tls.read(&mut buf).await.unwrap();
            tls.write_all(b"pong from rustls").await.unwrap();
            tls.shutdown().await.unwrap();
            String::from_utf8(buf[..n].to_vec()).unwrap()
        });

        let args = [
            "client".to_string(),
            "--port".into(),
            port.to_string(),
            "--ca".into(),
            pki.path("ca.pem"),
            "--cert".into(),
            pki.path("client.pem"),
            "--key".into(),
            pki.path("client.key"),
            "--send".into(),
            "ping from tongsuo".into(),
        ];
        let mut cmd = python_cmd(&python);
        cmd.args(args);
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("tongsuo client stdout:\n{stdout}\nstderr:\n{stderr}");
        assert!(out.status.success(), "tongsuo client failed");
        assert!(stdout.contains("VERSION TLSv1.3"), "{stdout}");
        assert!(stdout.contains("CIPHER TLS_SM4_GCM_SM3"), "{stdout}");
        for line in SM2_SIGNED {
            assert!(
                stdout.contains(line),
                "server signed with SM2-SM3: {stdout}"
            );
        }
        assert!(stdout.contains("CN=localhost"), "{stdout}");
        assert!(stdout.contains("VERIFY_RESULT 0"), "{stdout}");
        assert!(stdout.contains("RECEIVED pong from rustls"), "{stdout}");
        assert_eq!(server.await.unwrap(), "ping from tongsuo");
    })
    .await
    .unwrap();
}

/// Tongsuo offering only TLS_SM4_CCM_SM3 gets CCM from our server; without a
/// client certificate it is refused by a server that requires one.
#[tokio::test]
async fn tongsuo_ccm_client_and_a_client_without_certificate() {
    let Some(python) = tongsuo_python() else {
        return;
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let pki = Pki::new("ccm");
        let config = Arc::new(
            GuomiServerBuilder::new(vec![pki.server.der.clone()], key_of(&pki.server))
                .unwrap()
                .client_auth(pki.roots(), true)
                .build()
                .unwrap(),
        );
        for with_cert in [true, false] {
            let acceptor = TlsAcceptor::from(config.clone());
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let server = tokio::spawn(async move {
                let (tcp, _) = listener.accept().await.unwrap();
                let mut tls = acceptor.accept(tcp).await?;
                let suite = tls.get_ref().1.negotiated_cipher_suite().unwrap().suite();
                let mut buf = vec![0u8; 64];
                let n = tls.read(&mut buf).await?;
                tls.write_all(&buf[..n]).await?;
                tls.shutdown().await?;
                Ok::<_, std::io::Error>(suite)
            });
            let mut args = vec![
                "client".to_string(),
                "--port".into(),
                port.to_string(),
                "--ca".into(),
                pki.path("ca.pem"),
                "--ciphersuites".into(),
                "TLS_SM4_CCM_SM3".into(),
            ];
            if with_cert {
                args.extend([
                    "--cert".into(),
                    pki.path("client.pem"),
                    "--key".into(),
                    pki.path("client.key"),
                ]);
            }
            let mut cmd = python_cmd(&python);
            cmd.args(args);
            let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
                .await
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            eprintln!("tongsuo client (client certificate: {with_cert}):\n{stdout}");
            let result = server.await.unwrap();
            if with_cert {
                assert!(out.status.success(), "{stdout}");
                assert!(stdout.contains("CIPHER TLS_SM4_CCM_SM3"), "{stdout}");
                assert!(stdout.contains("RECEIVED ping from tongsuo"), "{stdout}");
                assert_eq!(result.unwrap(), SM4_CCM_SM3);
            } else {
                assert!(!out.status.success(), "refused: {stdout}");
                assert!(stdout.contains("ERROR"), "{stdout}");
                assert!(
                    result.is_err(),
                    "our server refuses a client without certificate"
                );
            }
        }
    })
    .await
    .unwrap();
}

/// SM2 keys Tongsuo generates (PKCS#8 and SEC1 PEM) load, Tongsuo's SM2-SM3
/// signatures verify here under the default identifier, and ours verify there.
#[test]
fn tongsuo_sm2_keys_and_signatures() {
    let Some(python) = tongsuo_python() else {
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/tongsuo_sm2.py");
    let run = |args: &[&str]| {
        let mut cmd = Command::new(&python.0);
        if let Some(p) = &python.1 {
            cmd.env("PYTHONPATH", p);
        }
        let out = cmd.arg(&script).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let message = b"guomi interop message";
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let unhex = |s: &str| {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect::<Vec<u8>>()
    };
    for _ in 0..3 {
        let made: serde_yaml::Value = serde_yaml::from_str(&run(&["make", &hex(message)])).unwrap();
        let field = |k: &str| made[k].as_str().unwrap().to_string();
        let point = unhex(&field("point"));

        for pem in [field("pkcs8"), field("sec1")] {
            let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap();
            let key = load_sm2_key(&der).unwrap();
            let spki = key.public_key_der();
            assert!(
                spki.ends_with(&point),
                "the loaded key has Tongsuo's public point"
            );
        }

        let theirs = signature_from_der(&unhex(&field("signature")));
        let verifier = sm2::dsa::VerifyingKey::from_sec1_bytes(CERT_SM2_ID, &point).unwrap();
        assert!(
            verifier.verify(message, &theirs).is_ok(),
            "Tongsuo's signature verifies with the default SM2 identifier"
        );

        let secret = sm2::SecretKey::from_sec1_pem(&field("sec1")).unwrap();
        let ours = test_pki::sign_der(&secret, CERT_SM2_ID, message);
        let verdict = run(&["verify", &hex(&point), &hex(message), &hex(&ours)]);
        assert_eq!(verdict.trim(), "VALID");
        let mut tampered = message.to_vec();
        tampered[0] ^= 1;
        let verdict = run(&["verify", &hex(&point), &hex(&tampered), &hex(&ours)]);
        assert_eq!(verdict.trim(), "INVALID");
    }
}

/// `SEQUENCE { INTEGER r, INTEGER s }` to a signature (test-side parser).
fn signature_from_der(der: &[u8]) -> sm2::dsa::Signature {
    use x509_cert::der::{asn1::UintRef, Decode};
    let [r, s] = <[UintRef<'_>; 2]>::from_der(der).unwrap();
    let pad = |b: &[u8]| {
        let mut out = [0u8; 32];
        out[32 - b.len()..].copy_from_slice(b);
        out
    };
    sm2::dsa::Signature::from_scalars(pad(r.as_bytes()), pad(s.as_bytes())).unwrap()
}

/// A chain Tongsuo's libcrypto writes (root and leaf, SM2-with-SM3 without
/// parameters) passes our verifier, and serves a handshake with its key.
#[tokio::test]
async fn tongsuo_made_certificates_pass_our_verifier() {
    let Some(python) = tongsuo_python() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("proxy-tls-guomi-x509-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = Command::new(&python.0);
    if let Some(p) = &python.1 {
        cmd.env("PYTHONPATH", p);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/tongsuo_x509.py");
    let out = cmd.arg(script).arg(&dir).output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let roots = Arc::new(Sm2RootStore::from_pem_file(dir.join("ca.pem")).unwrap());
    let leaf = rustls::pki_types::CertificateDer::from_pem_file(dir.join("leaf.pem")).unwrap();
    let verifier = proxy_tls::guomi::Sm2ServerVerifier::new(roots.clone());
    rustls::client::danger::ServerCertVerifier::verify_server_cert(
        &verifier,
        &leaf,
        &[],
        &ServerName::try_from("localhost").unwrap(),
        &[],
        rustls::pki_types::UnixTime::now(),
    )
    .unwrap();

    let server = GuomiServerBuilder::from_pem_files(dir.join("leaf.pem"), dir.join("leaf.key"))
        .unwrap()
        .build()
        .unwrap();
    let client = GuomiClientBuilder::new(roots).build().unwrap();
    let (a, b) = tokio::io::duplex(64 * 1024);
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let server_task = tokio::spawn(async move {
        let mut tls = acceptor.accept(b).await.unwrap();
        tls.write_all(b"hi").await.unwrap();
        tls.shutdown().await.unwrap();
    });
    let mut tls = tokio::time::timeout(
        TEST_TIMEOUT,
        TlsConnector::from(Arc::new(client)).connect(ServerName::try_from("localhost").unwrap(), a),
    )
    .await
    .unwrap()
    .unwrap();
    let mut buf = Vec::new();
    tls.read_to_end(&mut buf).await.unwrap();
    assert_eq!(buf, b"hi");
    server_task.await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn our_client_to_tongsuo_server() {
    let Some(python) = tongsuo_python() else {
        return;
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let pki = Pki::new("client");
        let mut cmd = python_cmd(&python);
        cmd.args([
            "server",
            "--cert",
            &pki.path("server.pem"),
            "--key",
            &pki.path("server.key"),
            "--ca",
            &pki.path("ca.pem"),
            "--verify-client",
            "--reply",
            "pong from tongsuo",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (port_tx, port_rx) = tokio::sync::oneshot::channel();
        // Reads "PORT n", then the rest of the output until the peer exits.
        let reader = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout);
            let mut seen = String::new();
            let mut port_tx = Some(port_tx);
            let mut line = String::new();
            while lines.read_line(&mut line).unwrap_or(0) > 0 {
                if let Some(p) = line.trim().strip_prefix("PORT ") {
                    if let Some(tx) = port_tx.take() {
                        let _ = tx.send(p.parse::<u16>().unwrap());
                    }
                }
                seen.push_str(&line);
                line.clear();
            }
            seen
        });
        let port = match tokio::time::timeout(Duration::from_secs(20), port_rx).await {
            Ok(Ok(port)) => port,
            _ => {
                let _ = child.kill();
                let mut err = String::new();
                let _ = child.stderr.take().unwrap().read_to_string(&mut err);
                panic!(
                    "tongsuo server did not start: {}\n{err}",
                    reader.await.unwrap()
                );
            }
        };

        let config = GuomiClientBuilder::new(pki.roots())
            .client_cert(vec![pki.client.der.clone()], key_of(&pki.client))
            .unwrap()
            .build()
            .unwrap();
        let connector = TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        {
            let (_, conn) = tls.get_ref();
            assert_eq!(conn.negotiated_cipher_suite().unwrap().suite(), SM4_GCM_SM3);
            assert_eq!(
                conn.negotiated_key_exchange_group().unwrap().name(),
                CURVE_SM2_GROUP
            );
            let chain = conn.peer_certificates().unwrap();
            assert_eq!(chain[0], pki.server.der, "the server certificate first");
        }
        tls.write_all(b"ping from rustls").await.unwrap();
        let mut buf = vec![0u8; 64];
        let n = tls.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"pong from tongsuo");
        let _ = tls.shutdown().await;

        let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap();
        let out = reader.await.unwrap();
        eprintln!("tongsuo server stdout:\n{out}");
        assert!(status.success(), "tongsuo server failed: {out}");
        assert!(out.contains("CIPHER TLS_SM4_GCM_SM3"), "{out}");
        for line in SM2_SIGNED {
            assert!(out.contains(line), "client signed with SM2-SM3: {out}");
        }
        assert!(out.contains("CN=guomi client"), "{out}");
        assert!(out.contains("VERIFY_RESULT 0"), "{out}");
        assert!(out.contains("RECEIVED ping from rustls"), "{out}");
    })
    .await
    .unwrap();
}

/// An HTTP/1.1 upstream answering every request with its request head as the body.
fn echo_upstream() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                use std::io::Write;
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = stream.read(&mut chunk) else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head: Vec<u8> = buf.drain(..end + 4).collect();
                        let mut resp =
                            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", head.len())
                                .into_bytes();
                        resp.extend_from_slice(&head);
                        if stream.write_all(&resp).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Tongsuo through the proxy: the `tls` network filter terminates with its
/// Guomi config for a client offering only TLS_SM4_GCM_SM3 (an ECDSA
/// certificate serves everyone else), and the HTTP request reaches the upstream.
#[tokio::test]
async fn tongsuo_client_through_the_proxy_termination() {
    let Some(python) = tongsuo_python() else {
        return;
    };
    let pki = Pki::new("proxy");
    let ecdsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let ecdsa_cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&ecdsa)
        .unwrap();
    std::fs::write(pki.dir.join("ecdsa.pem"), ecdsa_cert.pem()).unwrap();
    std::fs::write(pki.dir.join("ecdsa.key"), ecdsa.serialize_pem()).unwrap();
    let yaml = format!(
        r#"
runtime: {{ worker_threads: 1 }}
listeners:
  - name: tls
    address: 127.0.0.1:0
    network_filters:
      - typed: tls
        config: {{ certificates: [{{ cert: {ecdsa_cert}, key: {ecdsa_key} }}], guomi: {{ cert: {sm2_cert}, key: {sm2_key} }} }}
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {{ path: {{ prefix: "/" }} }}
            cluster: echo
clusters:
  - name: echo
    endpoints: ["{upstream}"]
"#,
        ecdsa_cert = pki.path("ecdsa.pem"),
        ecdsa_key = pki.path("ecdsa.key"),
        sm2_cert = pki.path("server.pem"),
        sm2_key = pki.path("server.key"),
        upstream = echo_upstream(),
    );
    let mut registry = proxy_core::Registry::default();
    proxy_tls::register(&mut registry);
    let server = proxy_core::Server::new(
        proxy_core::config::Config::from_yaml(&yaml).unwrap(),
        registry,
    )
    .unwrap();
    let runner = server.clone();
    std::thread::spawn(move || runner.run_until(std::future::pending()).unwrap());
    let mut port = None;
    for _ in 0..500 {
        if let Some((_, addr)) = server
            .listener_addresses()
            .into_iter()
            .find(|(n, _)| n == "tls")
        {
            port = addr.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let port = port.expect("proxy listener bound");

    let mut cmd = python_cmd(&python);
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
        TEST_TIMEOUT,
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
    for line in SM2_SIGNED {
        assert!(stdout.contains(line), "proxy signed with SM2-SM3: {stdout}");
    }
    assert!(stdout.contains("HTTP_STATUS HTTP/1.1 200"), "{stdout}");
    assert!(
        stdout.contains("GET /guomi HTTP/1.1"),
        "upstream saw the request: {stdout}"
    );
    server.shutdown();
}
