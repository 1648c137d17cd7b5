//! What the TLS integration tests share beyond `proxy-test-support`: the proxy
//! config of a TLS listener, a registry with `proxy_tls` and a filter showing the TLS
//! facts, `openssl s_server`, and the third-party clients' output as text.

// Test helpers: a failed setup should stop the test loudly.
#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use proxy_core::Registry;
use proxy_test_support::{tools, yaml};

/// A proxy config: one listener `tls` with the given `tls` filter config (YAML
/// flow text) and `http_filters`, routing everything to `upstream`.
pub fn proxy_yaml(upstream: std::net::SocketAddr, tls_config: &str, http_filters: &str) -> String {
    let network_filters =
        format!("network_filters:\n      - typed: tls\n        config: {tls_config}");
    let http_filters = format!("http_filters: [{http_filters}]");
    yaml::config(
        &[yaml::listener(
            "tls",
            "echo",
            &[&network_filters, &http_filters],
        )],
        &[yaml::cluster("echo", &[upstream], &[])],
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

/// The output of a finished command: status success, stdout + stderr.
pub struct Output {
    pub ok: bool,
    pub text: String,
}

impl From<tools::ToolOutput> for Output {
    fn from(out: tools::ToolOutput) -> Self {
        Self {
            ok: out.ok(),
            text: out.text(),
        }
    }
}

/// `openssl s_client` to 127.0.0.1:`port` with `args`, sending `request`; the
/// caller checked openssl is installed ([`installed`]).
pub fn s_client(port: u16, args: &[&str], request: &str) -> Output {
    tools::s_client(port, args, request)
        .expect("openssl is installed")
        .into()
}

/// `curl` with `args` (a `--max-time` of 10 s is added); the caller checked curl is
/// installed ([`installed`]).
pub fn curl(args: &[&str]) -> Output {
    tools::curl_blocking(args, Duration::from_secs(10))
        .expect("curl is installed")
        .into()
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
