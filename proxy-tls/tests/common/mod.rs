//! Helpers shared by the TLS integration tests: a test PKI written to files, an echo
//! upstream, a proxy started from YAML with `proxy_tls` registered, and runners for
//! the third-party clients (`openssl`, `curl`), skipped loudly when absent.

// Test helpers: a failed setup should stop the test loudly.
#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use std::{
    future::Future,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use proxy_core::{config::Config, Registry, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A directory of its own under cargo's test tmpdir.
pub fn scratch_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "proxy-tls-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A CA that issues leaf certificates into PEM files.
pub struct Pki {
    pub dir: PathBuf,
    ca_cert: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
    pub ca_pem: PathBuf,
}

/// A certificate and key written to files.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let dir = scratch_dir(name);
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca_cert = params.self_signed(&ca_key).unwrap();
        let ca_pem = dir.join("ca.pem");
        std::fs::write(&ca_pem, ca_cert.pem()).unwrap();
        Self {
            dir,
            ca_cert,
            ca_key,
            ca_pem,
        }
    }

    /// A server certificate for `names` (CN = first name), ECDSA P-256.
    pub fn server(&self, file: &str, names: &[&str]) -> Issued {
        self.issue(file, names, &[], rcgen::KeyPair::generate().unwrap(), None)
    }

    /// A client certificate with CN `cn` and URI SANs `uris`.
    pub fn client(&self, file: &str, cn: &str, uris: &[&str]) -> Issued {
        self.issue(
            file,
            &[],
            uris,
            rcgen::KeyPair::generate().unwrap(),
            Some(cn),
        )
    }

    /// An expired client certificate.
    pub fn expired_client(&self, file: &str) -> Issued {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "expired client");
        params.not_before = rcgen::date_time_ymd(2001, 1, 1);
        params.not_after = rcgen::date_time_ymd(2002, 1, 1);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca_cert, &self.ca_key).unwrap();
        self.write(file, &cert, &key)
    }

    pub fn issue(
        &self,
        file: &str,
        names: &[&str],
        uris: &[&str],
        key: rcgen::KeyPair,
        cn: Option<&str>,
    ) -> Issued {
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        let cn = cn.or(names.first().copied()).unwrap_or("leaf");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        for u in uris {
            params
                .subject_alt_names
                .push(rcgen::SanType::URI((*u).try_into().unwrap()));
        }
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.ca_cert, &self.ca_key).unwrap();
        self.write(file, &cert, &key)
    }

    fn write(&self, file: &str, cert: &rcgen::Certificate, key: &rcgen::KeyPair) -> Issued {
        let cert_path = self.dir.join(format!("{file}.pem"));
        let key_path = self.dir.join(format!("{file}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        Issued {
            cert: cert_path,
            key: key_path,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// Serves each accepted connection on 127.0.0.1 with `handle`, on a thread of its own.
pub fn upstream<F, Fut>(handle: F) -> std::net::SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (s, _) = listener.accept().await.unwrap();
                tokio::spawn(handle(s));
            }
        });
    });
    addr
}

/// An HTTP/1.1 upstream answering every request with its request head as the body.
pub fn echo_upstream() -> std::net::SocketAddr {
    upstream(|mut s| async move {
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
                let mut resp = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", head.len())
                    .into_bytes();
                resp.extend_from_slice(&head);
                if s.write_all(&resp).await.is_err() {
                    return;
                }
            }
        }
    })
}

/// Runs a server for `yaml` on a thread until `Server::shutdown`; returns once its
/// listeners are bound.
pub fn start(yaml: &str, registry: Registry) -> Server {
    let server = Server::new(Config::from_yaml(yaml).unwrap(), registry).unwrap();
    let runner = server.clone();
    std::thread::spawn(move || runner.run_until(std::future::pending()).unwrap());
    for _ in 0..500 {
        if !server.listener_addresses().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    server
}

/// The bound port of listener `name`.
pub fn port_of(server: &Server, name: &str) -> u16 {
    let addr = server
        .listener_addresses()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap()
        .1;
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// A proxy config: one listener `name` with the given `tls` filter config (YAML
/// flow text, indented for the place), routing everything to `upstream`.
pub fn proxy_yaml(upstream: std::net::SocketAddr, tls_config: &str, http_filters: &str) -> String {
    format!(
        r#"
runtime: {{ worker_threads: 1 }}
listeners:
  - name: tls
    address: 127.0.0.1:0
    network_filters:
      - typed: tls
        config: {tls_config}
    http_filters: [{http_filters}]
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {{ path: {{ prefix: "/" }} }}
            cluster: echo
clusters:
  - name: echo
    endpoints: ["{upstream}"]
"#
    )
}

/// A registry with `proxy_tls` registered on `runtime`, plus a `tls_facts` HTTP
/// filter copying core's `TlsInfo` (set by the TLS layer) into request headers (`x-tls-version`,
/// `x-tls-alpn`, `x-peer-subject`, `x-peer-uri`, `x-peer-dns`) so that the echo
/// upstream shows them.
pub fn registry(runtime: proxy_tls::TlsRuntime) -> Registry {
    use std::sync::Arc;
    let mut r = Registry::default();
    proxy_tls::register_with(&mut r, runtime);
    r.register_filter("tls_facts", |_, _| {
        Ok(Arc::new(|inner: proxy_core::BoxHttp| {
            proxy_core::BoxHttp::new(
                tower::ServiceBuilder::new()
                    .map_request(|mut req: proxy_core::HttpRequest| {
                        let facts = req
                            .extensions()
                            .get::<proxy_core::connection::TlsInfo>()
                            .cloned();
                        if let Some(f) = facts {
                            let h = req.headers_mut();
                            let mut put = |name: &'static str, v: &str| {
                                if let Ok(v) = http::HeaderValue::from_str(v) {
                                    h.insert(name, v);
                                }
                            };
                            put("x-tls-version", f.version);
                            put("x-tls-cipher", f.cipher);
                            if let Some(a) = &f.alpn {
                                put("x-tls-alpn", &String::from_utf8_lossy(a));
                            }
                            if let Some(p) = &f.peer {
                                put("x-peer-subject", p.subject.as_deref().unwrap_or(""));
                                put("x-peer-uri", &p.uri_sans.join(","));
                                put("x-peer-dns", &p.dns_sans.join(","));
                            }
                        }
                        req
                    })
                    .service(inner),
            )
        }))
    });
    r
}

/// Whether `tool` is on PATH; prints a loud SKIPPED line when not.
pub fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg(if tool == "openssl" {
            "version"
        } else {
            "--version"
        })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED: {tool} is not installed (scripts/deps/proxy-tls.sh installs it)");
    }
    ok
}

/// The output of a finished command: status success, stdout + stderr.
pub struct Output {
    pub ok: bool,
    pub text: String,
}

/// Runs `cmd` with `stdin` fed, killed after `timeout`.
pub fn run(mut cmd: Command, stdin: &[u8], timeout: Duration) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Output {
        ok: out.status.success(),
        text,
    }
}

/// `openssl s_client` to 127.0.0.1:`port` with `args`, sending `request`.
pub fn s_client(port: u16, args: &[&str], request: &str) -> Output {
    let mut cmd = Command::new("openssl");
    cmd.arg("s_client")
        .arg("-connect")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-ign_eof")
        .args(args);
    run(cmd, request.as_bytes(), Duration::from_secs(10))
}

/// `curl` with `args` (a `--max-time` is added).
pub fn curl(args: &[&str]) -> Output {
    let mut cmd = Command::new("curl");
    cmd.arg("--max-time").arg("10").args(args);
    run(cmd, b"", Duration::from_secs(15))
}

/// A running `openssl s_server`, killed on drop.
pub struct SServer {
    child: std::process::Child,
    pub port: u16,
}

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `openssl s_server -accept 127.0.0.1:0 <args>` and waits for its port.
pub fn s_server(args: &[&str]) -> SServer {
    use std::io::BufRead;
    let mut child = Command::new("openssl")
        .arg("s_server")
        .arg("-accept")
        .arg("127.0.0.1:0")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let Ok(line) = line else { return };
            if let Some(addr) = line.strip_prefix("ACCEPT ") {
                let port: u16 = addr.rsplit(':').next().unwrap().trim().parse().unwrap();
                let _ = tx.send(port);
                break;
            }
        }
        // Keep draining so s_server never blocks on a full pipe.
        for _ in lines {}
    });
    let port = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    SServer { child, port }
}
