//! In-process upstream servers on `127.0.0.1:0`.
//!
//! Each runs on a thread of its own (with a single-threaded tokio runtime), so it
//! serves whether the test is async or not, and stops, closing its listener and its
//! connections, when its [`Upstream`] handle drops: keep the handle for as long as
//! the test needs the server. Every server counts its connections; the HTTP ones
//! record every request they answered ([`Seen`]).
//!
//! - [`spawn_raw`]: the accept loop the others build on: a handler per connection.
//! - [`Upstream::http`] / [`Upstream::http_async`]: HTTP/1.1 and h2c, a closure per
//!   request; [`Upstream::canned`]: a list of responses in turn.
//! - [`Upstream::echo`] (JSON), [`Upstream::head_echo`] (the request head as text),
//!   [`Upstream::named`]: ready-made answers.
//! - [`Upstream::sink`] (reads, never answers), [`Upstream::blackhole`] (never
//!   reads).

mod echo;
mod http_server;
mod sink;

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use tokio::{net::TcpStream, sync::oneshot};

pub use self::{echo::Echoed, http_server::response};

/// The response body type of the in-process HTTP upstreams.
pub type RespBody = BoxBody<Bytes, std::convert::Infallible>;

/// A one-buffer response body.
pub fn full(bytes: impl Into<Bytes>) -> RespBody {
    Full::new(bytes.into()).boxed()
}

/// A request an HTTP upstream answered.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Its 0-based number among the requests of this upstream.
    pub n: u64,
    /// The method.
    pub method: http::Method,
    /// The request target as received (a path and query for HTTP/1.1 origin form).
    pub uri: http::Uri,
    /// The protocol version.
    pub version: http::Version,
    /// The headers.
    pub headers: http::HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Seen {
    /// The path of the request target.
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    /// A header's first value, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The request head as HTTP/1.1 text: request line, `name: value` lines, blank
    /// line.
    pub fn head(&self) -> String {
        let mut head = format!("{} {} {:?}\r\n", self.method, self.uri, self.version);
        for (name, value) in &self.headers {
            head.push_str(&format!(
                "{name}: {}\r\n",
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        head.push_str("\r\n");
        head
    }
}

/// What an upstream counted and recorded, shared with its handlers.
#[derive(Debug, Default)]
pub struct Stats {
    connections: AtomicU64,
    hits: AtomicU64,
    bytes: AtomicU64,
    seen: Mutex<Vec<Seen>>,
}

impl Stats {
    /// Counts a request served.
    pub fn hit(&self) -> u64 {
        self.hits.fetch_add(1, Ordering::SeqCst)
    }

    /// Counts `n` bytes (of a body, or through a tunnel).
    pub fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::SeqCst);
    }

    /// Records a request and counts it; returns the record (with its number).
    pub fn record(&self, parts: &http::request::Parts, body: Bytes) -> Seen {
        let n = self.hit();
        let seen = Seen {
            n,
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
            body,
        };
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(seen.clone());
        seen
    }
}

/// A running in-process upstream; stops (closing its listener and connections) when
/// dropped.
#[derive(Debug)]
#[must_use = "the upstream stops when its handle drops"]
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    stats: Arc<Stats>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Requests served so far.
    pub fn hits(&self) -> u64 {
        self.stats.hits.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.stats.connections.load(Ordering::SeqCst)
    }

    /// Bytes counted so far by the servers that count them (body bytes of
    /// [`Upstream::sink`], or what a raw handler counted with [`Stats::add_bytes`]).
    pub fn bytes(&self) -> u64 {
        self.stats.bytes.load(Ordering::SeqCst)
    }

    /// The requests answered so far, in order (HTTP servers).
    pub fn requests(&self) -> Vec<Seen> {
        self.stats
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops the server now: its listener and connections close before this returns.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves every connection accepted on `127.0.0.1:0` with `handler` (given the
/// stream and the server's [`Stats`]), each on a task of its own, on a thread of its
/// own; the accept loop counts connections.
///
/// ```
/// use tokio::io::AsyncWriteExt;
///
/// let up = proxy_test_support::upstream::spawn_raw(|mut s, _| async move {
///     let _ = s.write_all(b"hello").await;
/// });
/// let mut c = std::net::TcpStream::connect(up.addr).unwrap();
/// let mut got = String::new();
/// std::io::Read::read_to_string(&mut c, &mut got).unwrap();
/// assert_eq!(got, "hello");
/// ```
///
/// # Panics
/// When `127.0.0.1:0` cannot be bound or the thread cannot start.
pub fn spawn_raw<F, Fut>(handler: F) -> Upstream
where
    F: Fn(TcpStream, Arc<Stats>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    spawn_raw_with(Arc::default(), handler)
}

/// Reads one request off `stream` for a raw upstream ([`spawn_raw`]): its head, and
/// for a `chunked` body everything up to the last chunk's end. `None` when the
/// stream ends or fails first.
///
/// # Example
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let mut wire: &[u8] = b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
/// let got = proxy_test_support::upstream::read_request(&mut wire).await.unwrap();
/// assert!(got.ends_with(b"ok\r\n0\r\n\r\n"));
/// # });
/// ```
pub async fn read_request(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let head_end = got.windows(4).position(|w| w == b"\r\n\r\n");
        let done = head_end.is_some_and(|end| {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            !head.contains("transfer-encoding: chunked") || got.ends_with(b"\r\n0\r\n\r\n")
        });
        if done {
            return Some(got);
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// [`spawn_raw`] with the given `stats`.
fn spawn_raw_with<F, Fut>(stats: Arc<Stats>, handler: F) -> Upstream
where
    F: Fn(TcpStream, Arc<Stats>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = std::net::TcpListener::bind(crate::ports::any_port()).expect("bind upstream");
    listener
        .set_nonblocking(true)
        .expect("non-blocking upstream listener");
    let addr = listener.local_addr().expect("upstream address");
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let counted = stats.clone();
    let thread = std::thread::Builder::new()
        .name(format!("upstream-{}", addr.port()))
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("upstream runtime");
            rt.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("upstream listener");
                let accept = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            // Out of descriptors, say: let the test's connections end.
                            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                            continue;
                        };
                        let _ = stream.set_nodelay(true);
                        counted.connections.fetch_add(1, Ordering::SeqCst);
                        tokio::spawn(handler(stream, counted.clone()));
                    }
                };
                tokio::select! {
                    () = accept => {}
                    _ = stop_rx => {}
                }
            });
        })
        .expect("spawn upstream thread");
    Upstream {
        addr,
        stats,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use http::{Method, StatusCode};

    use super::*;
    use crate::client;

    #[tokio::test]
    async fn echo_over_http1_and_h2c_records_requests() {
        let up = Upstream::echo("e");
        let r = client::request(
            up.addr,
            Method::POST,
            "/p?q=1",
            &[("x-a", "1")],
            Bytes::from("hi"),
        )
        .await
        .expect("h1");
        let e = Echoed::parse(&r.body);
        assert_eq!(
            (e.upstream.as_str(), e.method.as_str(), e.uri.as_str()),
            ("e", "POST", "/p?q=1")
        );
        assert_eq!((e.header("x-a"), e.body.as_str()), (Some("1"), "hi"));
        let req = client::build(
            up.addr,
            Method::GET,
            "/two",
            &[("x-echo-status", "503")],
            Bytes::new(),
        )
        .expect("request");
        let r = client::send_h2c(up.addr, req).await.expect("h2c");
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(Echoed::parse(&r.body).version, "HTTP/2.0");
        let seen = up.requests();
        assert_eq!(seen.len(), 2);
        assert_eq!((seen[0].n, seen[0].body.as_ref()), (0, &b"hi"[..]));
        assert_eq!(seen[1].path(), "/two");
        assert_eq!(up.hits(), 2);
        assert_eq!(up.connections(), 2);
    }

    #[tokio::test]
    async fn canned_answers_in_turn_then_repeats_the_last() {
        let up = Upstream::canned(vec![
            http::Response::builder()
                .status(503)
                .body(Bytes::from("first"))
                .expect("response"),
            http::Response::new(Bytes::from("then")),
        ]);
        let mut texts = Vec::new();
        for _ in 0..3 {
            let r = client::get(up.addr, "/", &[]).await;
            texts.push(format!("{} {}", r.status.as_u16(), r.text()));
        }
        assert_eq!(texts, ["503 first", "200 then", "200 then"]);
    }

    #[tokio::test]
    async fn head_echo_shows_the_head_and_sink_counts_bytes() {
        let up = Upstream::head_echo();
        let text = client::get(up.addr, "/h", &[("x-b", "2")]).await.text();
        assert!(text.starts_with("GET /h HTTP/1.1\r\n"), "{text}");
        assert!(text.contains("x-b: 2\r\n"), "{text}");

        let sink = Upstream::sink();
        let got = client::raw::exchange(sink.addr, b"12345", Duration::from_millis(100)).await;
        assert!(got.is_empty());
        assert!(crate::eventually(Duration::from_secs(5), || sink.bytes() == 5).await);
    }

    #[tokio::test]
    async fn a_dropped_upstream_refuses() {
        let up = Upstream::blackhole();
        let addr = up.addr;
        drop(up);
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
