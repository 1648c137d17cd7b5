//! Helpers shared by the socket tests: in-process upstreams on their own threads, a
//! proxy server run in-process with this crate's filters registered, and a client.

// Test helpers: a failed setup should stop the test loudly.
#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use proxy_core::{config::Config, Registry, Server};

/// Runs `body` with a time limit; a test that hangs fails instead.
pub async fn with_timeout<F: Future<Output = ()>>(secs: u64, body: F) {
    tokio::time::timeout(Duration::from_secs(secs), body)
        .await
        .expect("test timed out");
}

/// A registry with this crate's filters.
pub fn registry() -> Registry {
    let mut r = Registry::default();
    proxy_filters::register(&mut r);
    r
}

/// A request an upstream saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: http::Method,
    pub uri: http::Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// An in-process HTTP/1.1 upstream that records what it sees.
#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub hits: Arc<AtomicUsize>,
}

impl Upstream {
    /// Answers 200 with `name` as body and `x-upstream: name`, after `delay`.
    pub fn start(name: &'static str, delay: Duration) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let hits = Arc::new(AtomicUsize::new(0));
        let (s, h) = (seen.clone(), hits.clone());
        let addr = serve_tcp(move |stream| {
            let (s, h) = (s.clone(), h.clone());
            async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (s, h) = (s.clone(), h.clone());
                    async move {
                        h.fetch_add(1, Ordering::SeqCst);
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        s.lock().unwrap().push(Seen {
                            method: parts.method,
                            uri: parts.uri,
                            headers: parts.headers,
                            body,
                        });
                        tokio::time::sleep(delay).await;
                        let resp = Response::builder()
                            .header("x-upstream", name)
                            .header("x-remove-me", "1")
                            .body(Full::new(Bytes::from(name)))
                            .unwrap();
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            }
        });
        Self { addr, seen, hits }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Serves each accepted TCP connection with `handle`, on a thread of its own.
pub fn serve_tcp<F, Fut>(handle: F) -> SocketAddr
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
                let Ok((s, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(handle(s));
            }
        });
    });
    addr
}

/// An address where nothing listens.
pub fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

/// A proxy server running on a thread; shut down on drop.
pub struct Proxy {
    pub server: Server,
}

impl Proxy {
    /// Starts a server for `yaml` with this crate's filters; panics on a bad config.
    pub fn start(yaml: &str) -> Self {
        Self::try_start(yaml).unwrap()
    }

    /// Starts a server for `yaml`, or returns the config error text.
    pub fn try_start(yaml: &str) -> Result<Self, String> {
        Self::try_start_with(yaml, registry())
    }

    /// Starts a server for `yaml` with `registry`, or returns the config error text.
    pub fn try_start_with(yaml: &str, registry: Registry) -> Result<Self, String> {
        let config = Config::from_yaml(yaml).map_err(|e| e.to_string())?;
        let server = Server::new(config, registry).map_err(|e| {
            use std::fmt::Write as _;
            let mut s = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(c) = src {
                let _ = write!(s, ": {c}");
                src = c.source();
            }
            s
        })?;
        let runner = server.clone();
        std::thread::spawn(move || runner.run_until(std::future::pending()).unwrap());
        for _ in 0..500 {
            if !server.listener_addresses().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(Self { server })
    }

    /// The bound address of listener `name`.
    pub fn addr(&self, name: &str) -> String {
        self.server
            .listener_addresses()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.server.shutdown();
    }
}

/// A listener `name` on 127.0.0.1:0 routing everything to cluster `cluster`, with
/// `http_filters` (a YAML flow list, e.g. `[{typed: rbac, config: {...}}]`).
pub fn listener(name: &str, http_filters: &str, cluster: &str) -> String {
    format!(
        r#"  - name: {name}
    address: 127.0.0.1:0
    http_filters: {http_filters}
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - name: {name}-route
            match: {{ path: {{ prefix: "/" }} }}
            cluster: {cluster}
"#
    )
}

/// A whole config: `listeners` (from [`listener`]) and clusters by name and address.
pub fn config(listeners: &[String], clusters: &[(&str, SocketAddr)]) -> String {
    let mut y = String::from("runtime: { worker_threads: 1 }\nlisteners:\n");
    for l in listeners {
        y.push_str(l);
    }
    y.push_str("clusters:\n");
    for (name, addr) in clusters {
        y.push_str(&format!("  - name: {name}\n    endpoints: [\"{addr}\"]\n"));
    }
    y
}

/// A response as the client saw it.
#[derive(Debug)]
pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Sends `req` on a new HTTP/1.1 connection to `addr`.
pub async fn send(addr: &str, req: Request<Full<Bytes>>) -> Got {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Got {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// `GET path` with `headers`.
pub async fn get(addr: &str, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut b = Request::get(path).header("host", "test.local");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(addr, b.body(Full::new(Bytes::new())).unwrap()).await
}

/// Waits until `cond` holds, up to `secs`.
pub async fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// A free port on 127.0.0.1 (for the admin listener, which needs a fixed address).
pub fn free_addr() -> SocketAddr {
    closed_port()
}

/// `GET path` on the admin listener at `admin`: the body as text.
pub async fn admin_get(admin: SocketAddr, path: &str) -> String {
    let got = get(&admin.to_string(), path, &[]).await;
    String::from_utf8_lossy(&got.body).into_owned()
}

/// The value of the Prometheus sample `series` (exact text before the value).
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
}
