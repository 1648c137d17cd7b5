//! What proxy-lb's resilience tests (zone routing, steering, outlier detection, health
//! checks) share beyond `proxy-test-support`: the registry, a scripted upstream with
//! a health path, a webhook recorder, the listener YAML and the admin pages they read.

#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU16, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use proxy_core::Registry;
use proxy_test_support::{client::raw, server, upstream::response, yaml, TestServer};

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
/// `HEALTH_PATH`) and the body `<name>\n<request head>`, header `x-upstream: <name>`.
#[derive(Debug)]
pub struct Upstream {
    /// Its address.
    pub addr: SocketAddr,
    /// Its name, first line of every body.
    pub name: String,
    status: Arc<AtomicU16>,
    health_status: Arc<AtomicU16>,
    hits: Arc<AtomicU64>,
    probes: Arc<AtomicU64>,
    _server: proxy_test_support::Upstream,
}

/// The health path upstreams answer with `health_status`.
pub const HEALTH_PATH: &str = "/healthz";

impl Upstream {
    /// Starts one.
    pub fn start(name: &str) -> Self {
        let status = Arc::new(AtomicU16::new(200));
        let health_status = Arc::new(AtomicU16::new(200));
        let hits = Arc::new(AtomicU64::new(0));
        let probes = Arc::new(AtomicU64::new(0));
        let server = {
            let (name, status, health_status) =
                (name.to_owned(), status.clone(), health_status.clone());
            let (hits, probes) = (hits.clone(), probes.clone());
            proxy_test_support::Upstream::http(move |seen| {
                let status = if seen.path() == HEALTH_PATH {
                    probes.fetch_add(1, Ordering::SeqCst);
                    health_status.load(Ordering::SeqCst)
                } else {
                    hits.fetch_add(1, Ordering::SeqCst);
                    status.load(Ordering::SeqCst)
                };
                let mut resp = response(status, format!("{name}\n{}", seen.head()));
                resp.headers_mut()
                    .insert("x-upstream", name.parse().unwrap());
                resp
            })
        };
        Self {
            addr: server.addr,
            name: name.to_owned(),
            status,
            health_status,
            hits,
            probes,
            _server: server,
        }
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

    /// Health path requests served so far.
    pub fn probes(&self) -> u64 {
        self.probes.load(Ordering::SeqCst)
    }
}

/// A webhook server recording every request and answering `answer` (JSON).
#[derive(Debug)]
pub struct Webhook {
    /// Its address.
    pub addr: SocketAddr,
    server: proxy_test_support::Upstream,
}

impl Webhook {
    /// Starts one answering `answer` (a JSON text) to every POST.
    pub fn start(answer: &'static str) -> Self {
        let server = proxy_test_support::Upstream::http(move |_| {
            let mut resp = response(200, answer);
            let headers = resp.headers_mut();
            headers.insert("content-type", "application/json".parse().unwrap());
            headers.insert("connection", "close".parse().unwrap());
            resp
        });
        Self {
            addr: server.addr,
            server,
        }
    }

    /// The bodies received so far, as JSON.
    pub fn bodies(&self) -> Vec<serde_json::Value> {
        (self.server.requests().iter())
            .map(|r| serde_json::from_slice(&r.body).unwrap_or_default())
            .collect()
    }

    /// The request lines received so far.
    pub fn lines(&self) -> Vec<String> {
        (self.server.requests().iter())
            .map(|r| format!("{} {} {:?}", r.method, r.uri, r.version))
            .collect()
    }
}

/// A proxy for `yaml` with [`registry`]; returns once its listeners are bound.
pub fn start(yaml: &str) -> TestServer {
    TestServer::start(yaml, registry())
}

/// The error message `Server::new` gives for `yaml`.
pub fn load_error(yaml: &str) -> String {
    server::load_error(yaml, registry()).unwrap_or_else(|| String::from("<accepted>"))
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
        self.headers(name).into_iter().next()
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

/// Sends `GET path` with `headers` and reads the answer.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    request(addr, "GET", path, headers).await
}

/// Sends a request without a body (`connection: close`) and reads the answer.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let text = raw::request(addr, method, path, headers).await;
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

/// A listener block routing everything to `cluster`, with `filters` (YAML flow list).
pub fn listener(name: &str, filters: &str, cluster: &str) -> String {
    yaml::listener(name, cluster, &[&format!("http_filters: {filters}")])
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
