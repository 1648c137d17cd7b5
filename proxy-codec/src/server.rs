//! [`RpcServer`]: a protocol served on downstream connections, each request through a
//! request stack (a core `ProtocolServer` on listeners, or driven from code).

use std::{future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use proxy_core::{
    protocol::{self as core, BoxFuture, HandOff, ProtocolServer, ServeContext},
    proxy::ConnInfo,
    BoxHttp, Connection, Stream,
};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::{
    config::ServerOptions,
    error::OptionsError,
    metrics::CodecMetrics,
    mux::server::{serve_connection, ServeParams, Signal},
    protocol::Protocol,
    sniff::Sniff,
};

/// Serves a [`Protocol`] on downstream connections: many requests in flight per
/// connection, each mapped onto an `http::Request` and sent through a request stack
/// (any `tower` service boxed as [`BoxHttp`]), answered as they complete;
/// heartbeats answered locally; proxy-side failures answered with the protocol's own
/// error replies.
///
/// Built from code with [`RpcServer::new`] and typed [`ServerOptions`]; a listener
/// with `protocol: bolt` builds the same from its `protocol_options.bolt` section
/// ([`crate::register`]).
///
/// # Example
///
/// A Bolt server over an in-memory stream, its requests going through a
/// `ServiceBuilder` stack; a client writes one call and reads the answer.
///
/// ```
/// use std::time::Duration;
///
/// use bytes::{Bytes, BytesMut};
/// use proxy_codec::{bolt::status, config::ServerOptions, io, Bolt, Protocol, RpcServer};
/// use proxy_core::{BoxError, BoxHttp, HttpRequest, HttpResponse};
/// use tower::ServiceBuilder;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// let server = RpcServer::new(
///     Bolt,
///     ServerOptions { idle_timeout: Some(Duration::from_secs(300)), ..ServerOptions::default() },
/// )?;
/// let stack = ServiceBuilder::new()
///     // A layer: the header goes back in the Bolt header map.
///     .map_response(|mut resp: HttpResponse| {
///         resp.headers_mut().insert("x-served-by", http::HeaderValue::from_static("rust"));
///         resp
///     })
///     .service_fn(|req: HttpRequest| async move {
///         // `/{service}/{method}`, as routes see it.
///         let answer = format!("hello from {}", req.uri().path());
///         Ok::<_, BoxError>(HttpResponse::new(answer.into()))
///     });
///
/// let (mut client, conn) = tokio::io::duplex(64 * 1024);
/// tokio::spawn(async move {
///     server.serve_stream(conn, BoxHttp::new(stack), std::future::pending()).await
/// });
///
/// // A caller's request: an HTTP request the protocol turns into a Bolt frame.
/// let req = http::Request::post("/com.example.Echo:1.0/echo").body(())?;
/// let mut call = Bolt.request_from_http(req.into_parts().0, Bytes::from_static(b"hi"))?;
/// call.request_id = 7;
/// io::write_frame(&Bolt, &mut client, &call).await?;
///
/// let answer = io::read_frame(&Bolt, &mut client, &mut BytesMut::new(), 1 << 20)
///     .await?
///     .expect("an answer");
/// assert_eq!((answer.request_id, answer.status), (7, status::SUCCESS));
/// assert_eq!(answer.content, "hello from /com.example.Echo:1.0/echo");
/// let headers = Bolt::parse_header_map(answer.header)?;
/// assert!(headers.iter().any(|(k, v)| k == "x-served-by" && v.as_deref() == Some(&b"rust"[..])));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RpcServer<P> {
    protocol: Arc<P>,
    options: Arc<ServerOptions>,
    metrics: Arc<CodecMetrics>,
}

impl<P> Clone for RpcServer<P> {
    fn clone(&self) -> Self {
        Self {
            protocol: self.protocol.clone(),
            options: self.options.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// Timeouts of one served connection, when the options leave them out.
#[derive(Debug, Clone, Copy, Default)]
struct Timeouts {
    idle: Option<Duration>,
    frame: Option<Duration>,
}

// === impl RpcServer ===

impl<P: Protocol> RpcServer<P> {
    /// A server for `protocol` with `options`, counting into counters of its own
    /// (share them with [`RpcServer::with_metrics`]).
    ///
    /// # Errors
    /// An option serde accepts but the server cannot use (a zero size or duration),
    /// naming the field.
    pub fn new(protocol: P, options: ServerOptions) -> Result<Self, OptionsError> {
        options.validate()?;
        Ok(Self {
            protocol: Arc::new(protocol),
            options: Arc::new(options),
            metrics: Arc::default(),
        })
    }

    /// The same server counting into `metrics` (shared by every server and upstream
    /// of a proxy, rendered on its admin page).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<CodecMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The protocol.
    pub fn protocol(&self) -> &P {
        &self.protocol
    }

    /// The options.
    pub fn options(&self) -> &ServerOptions {
        &self.options
    }

    /// The counters.
    pub fn metrics(&self) -> &Arc<CodecMetrics> {
        &self.metrics
    }

    /// Whether a connection starting with `prefix` speaks this protocol.
    pub fn sniff(&self, prefix: &[u8]) -> Sniff {
        self.protocol.sniff(prefix)
    }

    /// Serves `conn` until it closes or `drain` resolves (then requests in flight
    /// finish and it closes); `prefix` holds bytes already read from it. Every request
    /// goes through `service` with the connection's facts (`ConnInfo` and what
    /// connection layers put in `conn.extensions`) in its extensions.
    pub async fn serve(
        &self,
        mut conn: Connection,
        prefix: Bytes,
        service: BoxHttp,
        drain: impl Future<Output = ()>,
    ) {
        let info = ConnInfo::new(conn.peer, conn.secure);
        conn.extensions.insert(info);
        let drain = async {
            drain.await;
            Signal::Drain
        };
        self.run(conn, prefix, service, drain, Timeouts::default(), None)
            .await
    }

    /// Serves any byte stream (a TCP stream, TLS, an in-memory `tokio::io::duplex`)
    /// until it closes or `drain` resolves; requests carry no connection facts.
    pub async fn serve_stream<IO>(&self, io: IO, service: BoxHttp, drain: impl Future<Output = ()>)
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (r, w) = tokio::io::split(io);
        let params = self.params(http::Extensions::new(), Timeouts::default());
        let drain = async {
            drain.await;
            Signal::Drain
        };
        serve_connection(params, r, w, Bytes::new(), service, drain).await;
    }

    fn params(&self, extensions: http::Extensions, timeouts: Timeouts) -> ServeParams<'_, P> {
        ServeParams {
            protocol: &*self.protocol,
            options: &self.options,
            counters: self.metrics.protocol(self.protocol.name()),
            extensions,
            idle_timeout: self.options.idle_timeout.or(timeouts.idle),
            frame_timeout: self.options.frame_timeout.or(timeouts.frame),
            resumed: false,
        }
    }

    /// Serves `conn`; with `handoff` (a hot upgrade may take the connection), a
    /// connection stopped for the hand-off goes to the new process, or is served on
    /// and drained here when it cannot go.
    async fn run(
        &self,
        conn: Connection,
        prefix: Bytes,
        service: BoxHttp,
        drain: impl Future<Output = Signal>,
        timeouts: Timeouts,
        handoff: Option<HandOff>,
    ) {
        let params = self.params(conn.extensions.clone(), timeouts);
        // A connection given back by a hand-off is served on with the same stack.
        let again = handoff.as_ref().map(|_| service.clone());
        match conn.stream {
            Stream::Tcp(s) => {
                let _ = s.set_nodelay(true);
                let (r, w) = s.into_split();
                serve_connection(params, r, w, prefix, service, drain).await;
            }
            Stream::Unix(s) => {
                let (r, w) = s.into_split();
                serve_connection(params, r, w, prefix, service, drain).await;
            }
            Stream::Boxed(s) => {
                let (mut r, mut w) = tokio::io::split(s);
                let left = serve_connection(params, &mut r, &mut w, prefix, service, drain).await;
                let (Some(unread), Some(handoff), Some(service)) = (left, handoff, again) else {
                    return;
                };
                let Stream::Boxed(stream) =
                    (match handoff.send(Stream::Boxed(r.unsplit(w)), &unread) {
                        Ok(()) | Err(None) => return,
                        Err(Some(stream)) => stream,
                    })
                else {
                    return;
                };
                // The new process took no more connections: drain here, as if the
                // hand-off had been a drain from the start.
                let mut params = self.params(conn.extensions, timeouts);
                params.resumed = true;
                let (r, w) = tokio::io::split(stream);
                let drain = std::future::ready(Signal::Drain);
                serve_connection(params, r, w, unread.freeze(), service, drain).await;
            }
        }
    }
}

impl<P: Protocol> ProtocolServer for RpcServer<P> {
    /// Its connections go over in a hot upgrade under the protocol's name.
    fn name(&self) -> Option<&str> {
        Some(self.protocol.name())
    }

    fn sniff(&self, prefix: &[u8]) -> core::Sniff {
        match self.protocol.sniff(prefix) {
            Sniff::Match => core::Sniff::Match,
            Sniff::NoMatch => core::Sniff::NoMatch,
            Sniff::NeedMore => core::Sniff::NeedMore,
        }
    }

    fn serve(
        &self,
        mut conn: Connection,
        prefix: Bytes,
        service: BoxHttp,
        ctx: ServeContext,
    ) -> BoxFuture<()> {
        let this = self.clone();
        Box::pin(async move {
            // The core's service already carries the connection facts.
            conn.extensions = http::Extensions::new();
            let timeouts = Timeouts {
                idle: Some(ctx.limits.idle_timeout.max(crate::config::DEFAULT_IDLE)),
                frame: Some(ctx.limits.header_read_timeout),
            };
            let mut drain = ctx.drain;
            let handoff = ctx.handoff;
            // A hot upgrade hands the connection over at its moment (serving it as
            // usual until then) where it can; otherwise it drains.
            let signal = async {
                drain.signaled().await;
                let Some(h) = handoff.as_ref() else {
                    return Signal::Drain;
                };
                match h.moment() {
                    Some(at) => {
                        tokio::time::sleep_until(at).await;
                        Signal::HandOff {
                            max_unread: h.max_unread(),
                        }
                    }
                    None => Signal::Drain,
                }
            };
            this.run(conn, prefix, service, signal, timeouts, handoff.clone())
                .await
        })
    }
}
