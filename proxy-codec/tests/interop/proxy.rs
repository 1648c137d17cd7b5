//! The proxy run in-process with `proxy_codec::register`, the YAML of its listeners,
//! routes and clusters, and a plain HTTP upstream and client for the `auto` listener.

use std::time::Duration;

use proxy_core::{config::Config, Registry, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The proxy, run in-process on its own thread with the codec registered; shut down
/// on drop.
pub(crate) struct Proxy {
    server: Server,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Validates `yaml`, binds its listeners and returns once they are up.
    pub(crate) fn start(yaml: &str) -> Self {
        let mut registry = Registry::default();
        proxy_codec::register(&mut registry);
        let config = Config::from_yaml(yaml).unwrap_or_else(|e| panic!("config: {e}\n{yaml}"));
        let server =
            Server::new(config, registry).unwrap_or_else(|e| panic!("server: {e}\n{yaml}"));
        let runner = server.clone();
        let thread = std::thread::spawn(move || runner.run_until(std::future::pending()).unwrap());
        for _ in 0..1000 {
            if !server.listener_addresses().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Self {
            server,
            thread: Some(thread),
        }
    }

    /// The bound address of listener `name`.
    pub(crate) fn addr(&self, name: &str) -> String {
        self.server
            .listener_addresses()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no listener {name}"))
            .1
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.server.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One route: requests whose path starts with `/<service>` go to `cluster`.
pub(crate) fn route(service: &str, cluster: &str) -> String {
    format!(
        "          - match: {{ path: {{ prefix: \"/{service}\" }} }}\n            cluster: {cluster}\n"
    )
}

/// A listener named `name` on 127.0.0.1:0 speaking `protocol`, with `routes`.
pub(crate) fn listener(name: &str, protocol: &str, routes: &str) -> String {
    format!(
        "  - name: {name}\n    address: 127.0.0.1:0\n    protocol: {protocol}\n    virtual_hosts:\n      - name: all\n        domains: [\"*\"]\n        routes:\n{routes}"
    )
}

/// A cluster named `name` speaking `protocol` to `endpoints`.
pub(crate) fn cluster(name: &str, protocol: &str, endpoints: &[String]) -> String {
    let list = endpoints
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!("  - name: {name}\n    protocol: {protocol}\n    endpoints: [{list}]\n")
}

/// A whole config: one worker thread, a short drain (the proxy is dropped at the end
/// of every test, even a failed one), the listeners and clusters given.
pub(crate) fn config(listeners: &[String], clusters: &[String]) -> String {
    format!(
        "runtime:\n  worker_threads: 1\n  drain_timeout: 1s\nlisteners:\n{}clusters:\n{}",
        listeners.concat(),
        clusters.concat()
    )
}

/// A plain HTTP/1.1 upstream on 127.0.0.1 answering every (bodiless) request with
/// `body`; keep-alive unless the request says `connection: close`.
pub(crate) async fn http_upstream(body: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let close = head.contains("\r\nconnection: close");
                        buf.drain(..end + 4);
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncontent-type: text/plain\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() || close {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// `GET path` over HTTP/1.1 on a fresh connection; the whole response as text.
pub(crate) async fn http_get(addr: &str, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("HTTP response within 10 s")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// One route with a timeout: paths starting with `/<service>` go to `cluster`.
pub(crate) fn route_with_timeout(service: &str, cluster: &str, timeout: &str) -> String {
    format!(
        "          - match: {{ path: {{ prefix: \"/{service}\" }} }}\n            cluster: {cluster}\n            timeout: {timeout}\n"
    )
}

/// One route on a whole-path regular expression.
pub(crate) fn route_regex(regex: &str, cluster: &str) -> String {
    format!(
        "          - match: {{ path: {{ regex: '{regex}' }} }}\n            cluster: {cluster}\n"
    )
}
