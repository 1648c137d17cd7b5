//! Helpers for proxy-lb's resilience tests (zone routing, steering, outlier detection,
//! health checks): scripted HTTP/1.1 upstreams on 127.0.0.1:0, a webhook recorder, a
//! proxy run in-process, and a raw HTTP/1.1 client.

#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU16, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use proxy_core::{config::Config, Registry, Server};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Every test's time limit.
pub const LIMIT: Duration = Duration::from_secs(30);

/// A registry with proxy-lb's balancers and the resilience factories.
pub fn registry() -> Registry {
    let mut r = Registry::default();
    proxy_lb::register(&mut r);
    proxy_lb::zone::register(&mut r);
    proxy_lb::steering::register(&mut r);
    proxy_lb::outlier::register(&mut r);
    proxy_lb::health::register(&mut r);
    r
}

/// A scripted upstream: answers every request with `status` (or `health_status` for
/// `health_path`) and the body `<name>\n<request head>`, header `x-upstream: <name>`.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Its address.
    pub addr: SocketAddr,
    /// Its name, first line of every body.
    pub name: String,
    /// The status of ordinary requests.
    pub status: Arc<AtomicU16>,
    /// The status of requests for the health path.
    pub health_status: Arc<AtomicU16>,
    /// Ordinary requests served.
    pub hits: Arc<AtomicU64>,
    /// Health path requests served.
    pub probes: Arc<AtomicU64>,
}

/// The health path upstreams answer with `health_status`.
pub const HEALTH_PATH: &str = "/healthz";

impl Upstream {
    /// Starts one on its own thread.
    pub fn start(name: &str) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let up = Self {
            addr: listener.local_addr().unwrap(),
            name: name.to_owned(),
            status: Arc::new(AtomicU16::new(200)),
            health_status: Arc::new(AtomicU16::new(200)),
            hits: Arc::default(),
            probes: Arc::default(),
        };
        let me = up.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((s, _)) = listener.accept().await else {
                        continue;
                    };
                    tokio::spawn(me.clone().serve(s));
                }
            });
        });
        up
    }

    /// Sets the status of ordinary requests.
    pub fn set_status(&self, s: u16) {
        self.status.store(s, Ordering::SeqCst);
    }

    /// Sets the status of health probes.
    pub fn set_health(&self, s: u16) {
        self.health_status.store(s, Ordering::SeqCst);
    }

    /// Ordinary requests served so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    async fn serve(self, mut s: TcpStream) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = buf.drain(..end + 4).collect();
                let head = String::from_utf8_lossy(&head).into_owned();
                // Request bodies: content-length only (the tests send none or small).
                let len = header_value(&head, "content-length")
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                while buf.len() < len {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                buf.drain(..len);
                let path = head.split(' ').nth(1).unwrap_or("/");
                let status = if path == HEALTH_PATH {
                    self.probes.fetch_add(1, Ordering::SeqCst);
                    self.health_status.load(Ordering::SeqCst)
                } else {
                    self.hits.fetch_add(1, Ordering::SeqCst);
                    self.status.load(Ordering::SeqCst)
                };
                let body = format!("{}\n{head}", self.name);
                let close = head.to_ascii_lowercase().contains("connection: close");
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nx-upstream: {}\r\n{}\r\n{body}",
                    body.len(),
                    self.name,
                    if close { "connection: close\r\n" } else { "" }
                );
                if s.write_all(resp.as_bytes()).await.is_err() || close {
                    return;
                }
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// A header's value in a raw head (case-insensitive name).
pub fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A webhook server recording every POSTed body and answering `answer`.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// Its address.
    pub addr: SocketAddr,
    /// Bodies received, in order.
    pub bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    /// Request lines received.
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Webhook {
    /// Starts one answering `answer` (a JSON text) to every POST.
    pub fn start(answer: &'static str) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let hook = Self {
            addr: listener.local_addr().unwrap(),
            bodies: Arc::default(),
            lines: Arc::default(),
        };
        let me = hook.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((mut s, _)) = listener.accept().await else {
                        continue;
                    };
                    let me = me.clone();
                    tokio::spawn(async move {
                        let mut buf = Vec::new();
                        let mut chunk = [0u8; 4096];
                        let end = loop {
                            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break end + 4;
                            }
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        let len = header_value(&head, "content-length")
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        while buf.len() < end + len {
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let body: serde_json::Value =
                            serde_json::from_slice(&buf[end..end + len]).unwrap_or_default();
                        me.lines
                            .lock()
                            .unwrap()
                            .push(head.lines().next().unwrap_or_default().to_owned());
                        me.bodies.lock().unwrap().push(body);
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                            answer.len()
                        );
                        let _ = s.write_all(resp.as_bytes()).await;
                    });
                }
            });
        });
        hook
    }

    /// The bodies received so far.
    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.bodies.lock().unwrap().clone()
    }
}

/// A proxy run on its own thread until dropped.
pub struct Proxy {
    /// The server.
    pub server: Server,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy for `yaml`; returns once its listeners are bound.
    pub fn start(yaml: &str) -> Self {
        Self::start_with(yaml, registry())
    }

    /// Starts a proxy for `yaml` with `registry`.
    pub fn start_with(yaml: &str, registry: Registry) -> Self {
        let server = Server::new(Config::from_yaml(yaml).unwrap(), registry).unwrap();
        let runner = server.clone();
        let handle = std::thread::spawn(move || runner.run_until(std::future::pending()).unwrap());
        for _ in 0..500 {
            if !server.listener_addresses().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Self {
            server,
            handle: Some(handle),
        }
    }

    /// The bound address of listener `name`.
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.server
            .listener_addresses()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
            .parse()
            .unwrap()
    }

    /// Stops the proxy and waits for it.
    pub fn stop(&mut self) {
        self.server.shutdown();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The error message `Server::new` gives for `yaml`.
pub fn load_error(yaml: &str) -> String {
    match Config::from_yaml(yaml) {
        Err(e) => e.to_string(),
        Ok(cfg) => match Server::new(cfg, registry()) {
            Err(e) => proxy_core::DisplayChain(&e).to_string(),
            Ok(_) => String::from("<accepted>"),
        },
    }
}

/// A loopback address free a moment ago.
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// One HTTP/1.1 response, read off a `connection: close` request.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: u16,
    /// The raw head.
    pub head: String,
    /// The body.
    pub body: String,
}

impl Reply {
    /// A response header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.head, name)
    }

    /// Every value of a response header.
    pub fn headers(&self, name: &str) -> Vec<&str> {
        self.head
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
            })
            .collect()
    }

    /// The upstream that answered (first body line).
    pub fn upstream(&self) -> &str {
        self.body.lines().next().unwrap_or_default()
    }
}

/// Sends `GET path` with `headers` (`name: value` lines) and reads the answer.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    request(addr, "GET", path, headers).await
}

/// Sends a request without a body and reads the answer.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// Polls `check` every 20 ms until it holds or `limit` passes; returns whether it held.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// A listener block routing everything to `cluster`, with `filters` (YAML flow list).
pub fn listener(name: &str, filters: &str, cluster: &str) -> String {
    format!(
        r#"  - name: {name}
    address: 127.0.0.1:0
    http_filters: {filters}
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {{ path: {{ prefix: "/" }} }}
            cluster: {cluster}
"#
    )
}

/// The Prometheus text of the admin endpoint at `admin`.
pub async fn prometheus(admin: SocketAddr) -> String {
    get(admin, "/stats/prometheus", &[]).await.body
}

/// The admin `/clusters` entry of endpoint `addr` in cluster `cluster`, with the
/// cluster's extension statuses: `(endpoint, extensions)`.
pub async fn cluster_status(
    admin: SocketAddr,
    cluster: &str,
    addr: SocketAddr,
) -> (serde_json::Value, serde_json::Value) {
    let body = get(admin, "/clusters", &[]).await.body;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let c = v["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == cluster)
        .unwrap()
        .clone();
    let e = c["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["address"] == addr.to_string())
        .unwrap()
        .clone();
    (e, c["extensions"].clone())
}

/// The health flags of endpoint `addr` on the admin `/clusters` page.
pub async fn flags(admin: SocketAddr, cluster: &str, addr: SocketAddr) -> Vec<String> {
    let (e, _) = cluster_status(admin, cluster, addr).await;
    e["health_flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect()
}
