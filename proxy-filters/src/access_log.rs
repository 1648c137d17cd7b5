//! An access log filter: one line per request, as a text template with `%FIELD%`
//! placeholders or as JSON lines, written by a writer thread off the request path.
//!
//! The line is formatted when the response body ends (or is dropped), so it carries
//! the bytes sent and the full duration. It goes through a bounded queue to a thread
//! that writes with a buffered writer and flushes whenever the queue is empty; when
//! the writer falls behind, lines are dropped and counted, never waited for.
//!
//! Fields: `%START_TIME%` (RFC 3339, UTC), `%METHOD%`, `%PATH%` (path and query),
//! `%PROTOCOL%`, `%STATUS%`, `%BYTES_SENT%`, `%DURATION%` (milliseconds),
//! `%PEER%` (address and port), `%PEER_IP%`, `%AUTHORITY%`, `%ROUTE%`,
//! `%PROXY_ERROR%`, `%RPC_SERVICE%`, `%RPC_METHOD%`, `%REQ(name)%`, `%RESP(name)%`, and
//! Envoy's `%RESPONSE_CODE%`, `%DOWNSTREAM_REMOTE_ADDRESS%`, `%ROUTE_NAME%`,
//! `%REQ(:METHOD)%`, `%REQ(:PATH)%`, `%REQ(:AUTHORITY)%`. `%%` is a literal `%`.
//! A missing value prints `-`. In JSON lines a value that is exactly one numeric
//! field (`%STATUS%`, `%BYTES_SENT%`, `%DURATION%`) is a number.
//!
//! ```yaml
//! http_filters:
//!   - typed: access_log
//!     config:
//!       path: /var/log/proxy/access.log     # absent: stdout
//!       format: { json: { status: "%STATUS%", path: "%PATH%", ua: "%REQ(user-agent)%" } }
//! ```

mod format;

use std::{
    fs::OpenOptions,
    io::{BufWriter, Write},
    path::PathBuf,
    pin::Pin,
    sync::{mpsc, Arc},
    task::{Context, Poll},
    time::{Instant, SystemTime},
};

use bytes::Bytes;
use http::{HeaderValue, Method, Uri, Version};
use http_body::{Frame, SizeHint};
use proxy_core::{Body, BoxError, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use tower_service::Service;

pub use format::{LogFormat, DEFAULT_TEXT};

use crate::{metrics::AccessLogCounters, ConfigError};

/// The registered name.
pub const NAME: &str = "access_log";

/// The `access_log` filter's section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// Names this filter in metrics (default: the listener's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The file appended to; stdout when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The line format.
    #[serde(default)]
    pub format: LogFormat,
    /// Lines queued for the writer at most (default 8192); beyond that lines are dropped.
    #[serde(default = "default_buffer")]
    pub buffer_lines: std::num::NonZeroUsize,
}

fn default_buffer() -> std::num::NonZeroUsize {
    std::num::NonZeroUsize::new(8192).unwrap_or(std::num::NonZeroUsize::MIN)
}

/// The writer's end of the queue; the writer thread ends when the last layer clone
/// holding it is dropped.
#[derive(Debug)]
struct Sink {
    tx: mpsc::SyncSender<String>,
    format: format::Compiled,
    counters: Arc<AccessLogCounters>,
}

impl Sink {
    fn send(&self, line: String) {
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(_) => self.counters.dropped.inc(),
        }
    }
}

/// Applies [`AccessLog`] to a service.
#[derive(Debug, Clone)]
pub struct AccessLogLayer {
    sink: Arc<Sink>,
}

impl AccessLogLayer {
    /// Validates `cfg`, opens the file and starts the writer thread.
    ///
    /// # Errors
    /// An unknown `%FIELD%`, a bad header name in `%REQ()%`, a file that cannot be
    /// opened for appending.
    pub fn new(
        cfg: &AccessLogConfig,
        counters: Arc<AccessLogCounters>,
    ) -> Result<Self, ConfigError> {
        let format = format::Compiled::new(&cfg.format)?;
        let out: Box<dyn Write + Send> = match &cfg.path {
            Some(p) => Box::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| {
                        ConfigError::field(NAME, "path", format!("{}: {e}", p.display()))
                    })?,
            ),
            None => Box::new(std::io::stdout()),
        };
        let (tx, rx) = mpsc::sync_channel::<String>(cfg.buffer_lines.get());
        let writer_counters = counters.clone();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(rx, out, &writer_counters))
            .map_err(|e| ConfigError::field(NAME, "path", format!("writer thread: {e}")))?;
        Ok(Self {
            sink: Arc::new(Sink {
                tx,
                format,
                counters,
            }),
        })
    }
}

fn write_lines(
    rx: mpsc::Receiver<String>,
    out: Box<dyn Write + Send>,
    counters: &AccessLogCounters,
) {
    let mut out = BufWriter::with_capacity(64 * 1024, out);
    while let Ok(line) = rx.recv() {
        let mut write = |line: String| match out.write_all(line.as_bytes()) {
            Ok(()) => counters.written.inc(),
            Err(_) => counters.errors.inc(),
        };
        write(line);
        while let Ok(line) = rx.try_recv() {
            write(line);
        }
        if out.flush().is_err() {
            counters.errors.inc();
        }
    }
}

impl<S> tower_layer::Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> AccessLog<S> {
        AccessLog {
            inner,
            sink: self.sink.clone(),
        }
    }
}

/// Logs one line per request (see [`self`]).
#[derive(Debug, Clone)]
pub struct AccessLog<S> {
    inner: S,
    sink: Arc<Sink>,
}

/// What is known of a request when its response starts.
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) start_wall: SystemTime,
    pub(crate) start: Instant,
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) version: Version,
    pub(crate) peer: Option<std::net::SocketAddr>,
    pub(crate) authority: Option<HeaderValue>,
    pub(crate) rpc: Option<(Arc<str>, Arc<str>)>,
    pub(crate) req_headers: Vec<Option<HeaderValue>>,
    pub(crate) status: u16,
    pub(crate) route: Option<Arc<str>>,
    pub(crate) proxy_error: Option<HeaderValue>,
    pub(crate) resp_headers: Vec<Option<HeaderValue>>,
    pub(crate) bytes_sent: u64,
}

impl<S> Service<HttpRequest> for AccessLog<S>
where
    S: Service<HttpRequest, Response = HttpResponse>,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: HttpRequest) -> Self::Future {
        let fmt = &self.sink.format;
        let record = Record {
            start_wall: SystemTime::now(),
            start: Instant::now(),
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            peer: req
                .extensions()
                .get::<proxy_core::proxy::ConnInfo>()
                .and_then(|c| c.peer),
            authority: req
                .uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
                .or_else(|| req.headers().get(http::header::HOST).cloned()),
            rpc: format::rpc_of(&req),
            req_headers: fmt
                .req_headers
                .iter()
                .map(|h| req.headers().get(h).cloned())
                .collect(),
            status: 0,
            route: None,
            proxy_error: None,
            resp_headers: Vec::new(),
            bytes_sent: 0,
        };
        ResponseFuture {
            fut: self.inner.call(req),
            record: Some(record),
            sink: self.sink.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`AccessLog`]: records the response head and wraps
    /// the body to count bytes and log at its end.
    pub struct ResponseFuture<F> {
        #[pin]
        fut: F,
        record: Option<Record>,
        sink: Arc<Sink>,
    }
}

impl<F, E> std::future::Future for ResponseFuture<F>
where
    F: std::future::Future<Output = Result<HttpResponse, E>>,
{
    type Output = Result<HttpResponse, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.fut.poll(cx));
        let Some(mut record) = this.record.take() else {
            return Poll::Ready(result);
        };
        let resp = match result {
            Ok(resp) => resp,
            Err(e) => {
                // The stack edge turns the error into a local reply; log it as 500.
                record.status = 500;
                this.sink.send(this.sink.format.line(&record));
                return Poll::Ready(Err(e));
            }
        };
        record.status = resp.status().as_u16();
        record.route = resp
            .extensions()
            .get::<proxy_core::proxy::MatchedRoute>()
            .map(|r| r.0.name.clone());
        record.proxy_error = resp.headers().get("x-proxy-error").cloned();
        record.resp_headers = this
            .sink
            .format
            .resp_headers
            .iter()
            .map(|h| resp.headers().get(h).cloned())
            .collect();
        let (parts, body) = resp.into_parts();
        let body = Body::new(LoggedBody {
            inner: body,
            record: Some(record),
            sink: this.sink.clone(),
        });
        Poll::Ready(Ok(HttpResponse::from_parts(parts, body)))
    }
}

/// A response body that counts its bytes and logs the line when it ends or drops.
struct LoggedBody {
    inner: Body,
    record: Option<Record>,
    sink: Arc<Sink>,
}

impl LoggedBody {
    fn finish(&mut self) {
        if let Some(r) = self.record.take() {
            self.sink.send(self.sink.format.line(&r));
        }
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        self.finish();
    }
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let (Some(d), Some(r)) = (f.data_ref(), this.record.as_mut()) {
                    r.bytes_sent += d.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            Some(Err(_)) | None => this.finish(),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
