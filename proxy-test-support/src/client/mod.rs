//! Clients: HTTP/1.1 and h2c over hyper (a request in, status, headers and the whole
//! body out), and [`raw`] bytes on a socket where the wire format matters.

pub mod raw;

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::BoxError;

/// A response read whole.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status.
    pub status: StatusCode,
    /// The version it came in.
    pub version: Version,
    /// The headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Response {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's first value, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every value of a header, as text.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }
}

async fn collect(resp: http::Response<hyper::body::Incoming>) -> Result<Response, BoxError> {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Response {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
    })
}

/// Sends `req` on a new HTTP/1.1 connection to `addr` and reads the response whole.
///
/// # Errors
/// When the connection or the exchange fails.
pub async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Result<Response, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    collect(sender.send_request(req).await?).await
}

/// Sends `req` on a new h2c (HTTP/2 with prior knowledge) connection to `addr`.
///
/// # Errors
/// When the connection or the exchange fails.
pub async fn send_h2c(addr: SocketAddr, req: Request<Full<Bytes>>) -> Result<Response, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    collect(sender.send_request(req).await?).await
}

/// A request for `path` with `headers` and `body`; `host` is `addr` unless `headers`
/// name one.
///
/// # Errors
/// When a header is not valid.
pub fn build(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Request<Full<Bytes>>, BoxError> {
    let mut req = Request::builder().method(method).uri(path);
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        req = req.header("host", addr.to_string());
    }
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    Ok(req.body(Full::new(body))?)
}

/// One request on a fresh HTTP/1.1 connection ([`build`], then [`send`]).
///
/// # Errors
/// When the connection or the exchange fails.
pub async fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Response, BoxError> {
    send(addr, build(addr, method, path, headers, body)?).await
}

/// `GET path` with `headers` on a fresh HTTP/1.1 connection.
///
/// # Panics
/// When the connection or the exchange fails.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    request(addr, Method::GET, path, headers, Bytes::new())
        .await
        .unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"))
}

/// A keep-alive HTTP/1.1 client on one connection, reconnecting when the server
/// closed it between requests.
#[derive(Debug)]
pub struct H1Client {
    addr: SocketAddr,
    sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
    /// Connections opened so far.
    pub connects: usize,
}

impl H1Client {
    /// A client for `addr`; connects on the first request.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            sender: None,
            connects: 0,
        }
    }

    async fn ready_sender(
        &mut self,
    ) -> Result<&mut hyper::client::conn::http1::SendRequest<Full<Bytes>>, BoxError> {
        if let Some(s) = self.sender.as_mut() {
            if s.ready().await.is_err() {
                self.sender = None;
            }
        }
        if self.sender.is_none() {
            let stream = TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.connects += 1;
            self.sender = Some(sender);
        }
        self.sender.as_mut().ok_or_else(|| "no connection".into())
    }

    /// Sends a request ([`build`]) on the connection, opening one if needed.
    ///
    /// # Errors
    /// When the connection or the exchange fails (the next request reconnects).
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Response, BoxError> {
        let req = build(self.addr, method, path, headers, body)?;
        let sender = self.ready_sender().await?;
        match sender.send_request(req).await {
            Ok(resp) => collect(resp).await,
            Err(e) => {
                self.sender = None;
                Err(e.into())
            }
        }
    }
}

/// Runs `total` requests made by `request(index)`, at most `concurrency` at a time;
/// their results by index.
///
/// # Panics
/// When a request task panics.
pub async fn many<T, F, Fut>(total: usize, concurrency: usize, request: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let mut results: Vec<Option<T>> = (0..total).map(|_| None).collect();
    let mut running = tokio::task::JoinSet::new();
    let mut record = |done: Result<(usize, T), tokio::task::JoinError>| {
        let (index, result) = done.expect("a request task");
        results[index] = Some(result);
    };
    for index in 0..total {
        if running.len() >= concurrency.max(1) {
            if let Some(done) = running.join_next().await {
                record(done);
            }
        }
        let fut = request(index);
        running.spawn(async move { (index, fut.await) });
    }
    while let Some(done) = running.join_next().await {
        record(done);
    }
    results.into_iter().flatten().collect()
}
