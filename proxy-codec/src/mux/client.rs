//! The upstream side: multiplexed connections to one endpoint, shared by every
//! downstream connection that sends there.
//!
//! Each endpoint gets `connections_per_endpoint` connections, used round-robin and
//! opened lazily (again after one closes). A connection keeps a table of the
//! requests in flight on it: each caller gives its request an id of the connection's
//! own (so callers from different downstream connections never collide), appends it
//! to the connection's write buffer (written at once by the caller on a quiet line,
//! else in one batch by the connection's task), and waits in its slot of the table;
//! the connection's task reads each response and wakes the caller waiting for that
//! id. The caller's own request id is restored by the downstream side, which kept
//! it. A response whose id is not in the table (its caller gave up, or nobody asked)
//! is dropped and counted. When a connection closes, only the requests in flight on
//! it fail (with an upstream error the downstream side turns into the protocol's
//! error reply); those it never wrote go once more, on a fresh connection.

use std::{
    fmt,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering::Relaxed},
        Arc,
    },
    task::{Context, Poll},
};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use futures_util::FutureExt;
use proxy_core::{
    protocol::BoxFuture, Body, BoxError, HttpRequest, HttpResponse, ProxyError, Stream,
};
use tokio::io::AsyncWrite;
use tower_service::Service;

use super::{
    collect_streaming,
    connection::{Answer, Conn, ConnTask},
    log, take_whole, CollectError,
};
use crate::{
    config::UpstreamOptions,
    metrics::{CodecMetrics, Counters, TooLarge},
    protocol::{FrameKind, Protocol},
};

/// How long a call waits for its response when neither the cluster's
/// `request_timeout` nor the request itself (Bolt's timeout field, Dubbo's `timeout`
/// attachment) sets a limit: longer than the RPC clients' own defaults (SOFARPC 3 s,
/// Dubbo 1 s), so it never cuts a call its client still waits for, yet bounded, so a
/// silent upstream cannot hold a call (and its slot) for as long as the connection
/// lives.
pub const DEFAULT_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Opens a byte stream to one upstream endpoint (TCP, the cluster's transport, the
/// connect timeout).
///
/// Implemented by closures returning a stream, and by [`SocketAddr`] (plain TCP, no
/// delay).
pub trait Connect: Send + Sync + 'static {
    /// Opens a new stream.
    fn connect(&self) -> Pin<Box<dyn Future<Output = Result<Stream, ProxyError>> + Send>>;
}

impl<F, Fut> Connect for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Stream, ProxyError>> + Send + 'static,
{
    fn connect(&self) -> Pin<Box<dyn Future<Output = Result<Stream, ProxyError>> + Send>> {
        Box::pin(self())
    }
}

impl Connect for SocketAddr {
    fn connect(&self) -> Pin<Box<dyn Future<Output = Result<Stream, ProxyError>> + Send>> {
        let addr = *self;
        Box::pin(async move {
            let s = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|source| ProxyError::Connect { addr, source })?;
            let _ = s.set_nodelay(true);
            Ok(Stream::Tcp(s))
        })
    }
}

/// Attempts per request: a request its connection never wrote goes once more, on a
/// fresh connection.
const ATTEMPTS: usize = 2;

/// A request as the protocol's frame, with the timeout the request asks for.
type Encoded<F> = Result<(F, Option<std::time::Duration>), ProxyError>;

/// A request on its way to the connection.
enum Request<F> {
    /// Its body was in memory: encoded already.
    Encoded(Encoded<F>),
    /// Its body streams: read whole first.
    Streaming(Box<(http::request::Parts, Body)>),
}

struct Slot<F> {
    conn: ArcSwapOption<Conn<F>>,
    connecting: tokio::sync::Mutex<()>,
}

struct Inner<P: Protocol> {
    protocol: Arc<P>,
    connect: Box<dyn Connect>,
    options: UpstreamOptions,
    metrics: Arc<CodecMetrics>,
    slots: Box<[Slot<P::Frame>]>,
    next: AtomicUsize,
}

/// A multiplexed client for one upstream endpoint, from [`crate::RpcUpstream::client`]:
/// a `tower` service of `http::Request`s (cheap to clone; clones share the
/// connections), always ready (requests past `max_in_flight` wait inside).
///
/// # Example
///
/// A Dubbo endpoint on 127.0.0.1 (an [`crate::RpcServer`]) called over TCP by its
/// address, the call made from an `http::Request` whose body is a hessian2
/// invocation.
///
/// ```
/// use http_body_util::BodyExt;
/// use proxy_codec::{
///     config::{ServerOptions, UpstreamOptions}, dubbo, hessian2::Writer, Dubbo, RpcServer,
///     RpcUpstream,
/// };
/// use proxy_core::{BoxError, BoxHttp, HttpRequest, HttpResponse};
/// use tower::{service_fn, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let addr = listener.local_addr()?;
/// let endpoint = RpcServer::new(Dubbo, ServerOptions::default())?;
/// tokio::spawn(async move {
///     let app = BoxHttp::new(service_fn(|req: HttpRequest| async move {
///         let mut value = Writer::new();
///         value.int(dubbo::RESPONSE_VALUE).string(&format!("hello from {}", req.uri().path()));
///         Ok::<_, BoxError>(HttpResponse::new(value.into_bytes().into()))
///     }));
///     while let Ok((tcp, _)) = listener.accept().await {
///         let (endpoint, app) = (endpoint.clone(), app.clone());
///         tokio::spawn(async move { endpoint.serve_stream(tcp, app, std::future::pending()).await });
///     }
/// });
///
/// let client = RpcUpstream::new(Dubbo, UpstreamOptions::default())?.client(addr);
/// let mut call = Writer::new();
/// call.string("2.0.2").string("org.example.Greeter").string("1.0.0").string("hello")
///     .string("Ljava/lang/String;").string("world")
///     .string_map([("path", "org.example.Greeter")]);
/// let req = http::Request::post("/org.example.Greeter/hello").body(call.into_bytes().into())?;
/// let resp = client.oneshot(req).await?;
/// assert_eq!(resp.extensions().get::<dubbo::DubboResponseInfo>().map(|i| i.status), Some(dubbo::status::OK));
/// let body = resp.into_body().collect().await?.to_bytes();
/// assert!(body.ends_with(b"hello from /org.example.Greeter/hello"));
/// # Ok(())
/// # }
/// ```
pub struct MuxClient<P: Protocol> {
    inner: Arc<Inner<P>>,
}

impl<P: Protocol> Clone for MuxClient<P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<P: Protocol> fmt::Debug for MuxClient<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxClient")
            .field("protocol", &self.inner.protocol.name())
            .field("connections", &self.inner.slots.len())
            .finish()
    }
}

fn closed(request_sent: bool) -> ProxyError {
    ProxyError::Upstream {
        request_sent,
        source: "upstream connection closed".into(),
    }
}

impl<P: Protocol> MuxClient<P> {
    /// A client for the endpoint `connect` opens streams to, with validated options.
    pub(crate) fn new(
        protocol: Arc<P>,
        connect: impl Connect,
        options: UpstreamOptions,
        metrics: Arc<CodecMetrics>,
    ) -> Self {
        let slots = (0..options.connections_per_endpoint.get())
            .map(|_| Slot {
                conn: ArcSwapOption::empty(),
                connecting: tokio::sync::Mutex::new(()),
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                protocol,
                connect: Box::new(connect),
                options,
                metrics,
                slots,
                next: AtomicUsize::new(0),
            }),
        }
    }

    fn counters(&self) -> &Counters {
        self.inner.metrics.protocol(self.inner.protocol.name())
    }

    /// Sends one request and waits for its response (one-way requests: until
    /// appended to the connection's write buffer, answered with an empty `200`).
    ///
    /// # Errors
    /// [`ProxyError::Connect`] (and the like) when no connection can be opened,
    /// [`ProxyError::Timeout`] past the request's timeout (waiting for a slot under
    /// `max_in_flight` and for room in the write buffer included),
    /// [`ProxyError::Upstream`] when the connection closes before the response,
    /// [`ProxyError::ResponseTooLarge`] for a response over `max_frame_bytes`,
    /// [`ProxyError::RequestTooLarge`] for a request body over it (not sent),
    /// [`ProxyError::BadRequest`] for a request the protocol cannot encode.
    pub async fn send(&self, req: HttpRequest) -> Result<HttpResponse, ProxyError> {
        self.clone().send_owned(req).await
    }

    /// [`MuxClient::send`] on a clone. The future owns what it needs, so a boxed
    /// stack holds it whole rather than inside a wrapper with a second copy of the
    /// request. A request whose body is in memory (as every RPC frame's is) is
    /// encoded here, before the future starts, so the future carries the frame and
    /// not the request too; a streaming body is read first, in a box of its own.
    pub(crate) fn send_owned(
        self,
        req: HttpRequest,
    ) -> impl Future<Output = Result<HttpResponse, ProxyError>> + Send + 'static {
        let (parts, mut body) = req.into_parts();
        let max_frame = self.inner.options.max_frame_bytes.as_usize();
        let request = match take_whole(&mut body, max_frame) {
            Some(whole) => Request::Encoded(self.encode(parts, whole)),
            None => Request::Streaming(Box::new((parts, body))),
        };
        self.send_request(request)
    }

    /// The request, its body read whole, as the protocol's frame, with the timeout
    /// the request asks for.
    fn encode(
        &self,
        parts: http::request::Parts,
        body: Result<Bytes, CollectError>,
    ) -> Encoded<P::Frame> {
        let proto = &*self.inner.protocol;
        let body = match body {
            Ok(b) => b,
            Err(CollectError::TooLarge { len }) => return Err(self.request_too_large(len)),
            Err(CollectError::Failed) => {
                return Err(ProxyError::BadRequest("request body incomplete"))
            }
        };
        let own_timeout = proto.timeout(&parts);
        let frame = proto.request_from_http(parts, body).map_err(|_| {
            ProxyError::BadRequest("request cannot be encoded for the upstream protocol")
        })?;
        Ok((frame, own_timeout))
    }

    /// Reads a streaming body whole (at most `max_frame_bytes`), then encodes. The
    /// caller boxes this future, so the read is not boxed again.
    async fn encode_streaming(&self, parts: http::request::Parts, body: Body) -> Encoded<P::Frame> {
        let max_frame = self.inner.options.max_frame_bytes.as_usize();
        let body = collect_streaming(body, max_frame).await;
        self.encode(parts, body)
    }

    /// Counts and logs a request body over `max_frame_bytes` (`len` long, or at
    /// least); its error.
    fn request_too_large(&self, len: u64) -> ProxyError {
        let max_frame = self.inner.options.max_frame_bytes.as_usize();
        self.counters().count_too_large(TooLarge::UpstreamRequest);
        log::too_large(
            self.inner.protocol.name(),
            TooLarge::UpstreamRequest,
            len,
            max_frame,
        );
        ProxyError::RequestTooLarge {
            len,
            max: max_frame as u64,
        }
    }

    async fn send_request(self, request: Request<P::Frame>) -> Result<HttpResponse, ProxyError> {
        let inner = &*self.inner;
        let proto = &*inner.protocol;
        let (mut frame, own_timeout) = match request {
            Request::Encoded(encoded) => encoded?,
            Request::Streaming(streaming) => {
                let (parts, body) = *streaming;
                Box::pin(self.encode_streaming(parts, body)).await?
            }
        };
        let one_way = proto.kind(&frame) == FrameKind::OneWay;
        let timeout = match (inner.options.request_timeout, own_timeout) {
            (Some(a), Some(b)) => a.min(b),
            (Some(t), None) | (None, Some(t)) => t,
            // Neither the cluster nor the caller set one: a call must still end.
            (None, None) => DEFAULT_REQUEST_TIMEOUT,
        };
        let deadline = tokio::time::Instant::now() + timeout;
        for attempt in 1..=ATTEMPTS {
            let conn = self.connection().await?;
            Counters::inc(&self.counters().upstream_requests);
            // The wait for a slot and for room in the write buffer counts too. (The
            // call's future is made in place: a local of its own would be carried
            // beside the timeout's copy.)
            let answer = match tokio::time::timeout_at(
                deadline,
                conn.call(proto, &mut frame, one_way),
            )
            .await
            {
                Ok(a) => a,
                Err(_) => {
                    Counters::inc(&self.counters().upstream_timeouts);
                    return Err(ProxyError::Timeout);
                }
            };
            match answer {
                Answer::Response(f) => return Ok(proto.response_to_http(f)),
                Answer::Queued => return Ok(HttpResponse::new(Body::empty())),
                Answer::NotSent if attempt < ATTEMPTS => {}
                Answer::NotSent => return Err(closed(false)),
                Answer::Closed => {
                    Counters::inc(&self.counters().upstream_closed_in_flight);
                    return Err(closed(true));
                }
                Answer::Unencodable => {
                    return Err(ProxyError::BadRequest(
                        "request cannot be encoded for the upstream protocol",
                    ))
                }
                // Counted and logged by the connection, which skipped it.
                Answer::TooLarge { len, max } => {
                    return Err(ProxyError::ResponseTooLarge {
                        len,
                        max: max as u64,
                    })
                }
            }
        }
        Err(closed(false))
    }

    /// A live connection of the next slot, opened if needed.
    async fn connection(&self) -> Result<Arc<Conn<P::Frame>>, ProxyError> {
        let inner = &*self.inner;
        let i = inner.next.fetch_add(1, Relaxed) % inner.slots.len();
        if let Some(c) = inner.slots[i].conn.load_full().filter(|c| c.is_open()) {
            return Ok(c);
        }
        // Opening is rare: its state is boxed rather than carried by every call.
        Box::pin(self.open_slot(i)).await
    }

    /// Opens slot `i`'s connection unless another caller has meanwhile.
    async fn open_slot(&self, i: usize) -> Result<Arc<Conn<P::Frame>>, ProxyError> {
        let inner = &*self.inner;
        let slot = &inner.slots[i];
        let _guard = slot.connecting.lock().await;
        if let Some(c) = slot.conn.load_full().filter(|c| c.is_open()) {
            return Ok(c);
        }
        let stream = match inner.connect.connect().await {
            Ok(s) => s,
            Err(e) => {
                Counters::inc(&self.counters().upstream_connect_failures);
                return Err(e);
            }
        };
        Counters::inc(&self.counters().upstream_connects);
        let task = ConnTask {
            protocol: inner.protocol.clone(),
            metrics: inner.metrics.clone(),
            max_frame: inner.options.max_frame_bytes.as_usize(),
            heartbeat: inner.options.heartbeat_interval,
        };
        let max_in_flight = inner.options.max_in_flight.get() as usize;
        let open = |w: Box<dyn AsyncWrite + Send + Unpin>| Arc::new(Conn::new(w, max_in_flight));
        let conn = match stream {
            Stream::Tcp(s) => {
                let (r, w) = s.into_split();
                let conn = open(Box::new(w));
                tokio::spawn(task.run(conn.clone(), r));
                conn
            }
            Stream::Unix(s) => {
                let (r, w) = s.into_split();
                let conn = open(Box::new(w));
                tokio::spawn(task.run(conn.clone(), r));
                conn
            }
            Stream::Boxed(s) => {
                let (r, w) = tokio::io::split(s);
                let conn = open(Box::new(w));
                tokio::spawn(task.run(conn.clone(), r));
                conn
            }
        };
        slot.conn.store(Some(conn.clone()));
        Ok(conn)
    }
}

impl<P: Protocol> Service<HttpRequest> for MuxClient<P> {
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = BoxFuture<Result<HttpResponse, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Requests wait for a connection slot inside `send`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: HttpRequest) -> Self::Future {
        Box::pin(
            self.clone()
                .send_owned(req)
                .map(|r| r.map_err(BoxError::from)),
        )
    }
}
