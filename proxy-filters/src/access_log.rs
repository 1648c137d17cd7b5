//! An access log filter: one line per request, as a text template with `%FIELD%`
//! placeholders or as JSON lines, written by a writer thread off the request path.
//!
//! The line is formatted when the response body ends (or is dropped), so it carries
//! the bytes sent and the full duration. It goes through a bounded queue to a thread
//! that writes with a buffered writer and flushes whenever the queue is empty; when
//! the writer falls behind, lines are dropped and counted, never waited for.
//!
//! Building the layer starts nothing and opens nothing (so `--validate` has no side
//! effects): the writer thread starts with the first line, and opens the file (append,
//! created if missing) itself. At build the file's directory must exist; a file that
//! cannot be opened later is logged and its lines counted in
//! `proxy_filters_access_log_write_errors_total`, the open retried with the next line.
//! A relative `path` in a config file resolves from the file's directory.
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
//!       path: /var/log/proxy/access.log     # absent: stdout; relative: from the config file
//!       format: { json: { status: "%STATUS%", path: "%PATH%", ua: "%REQ(user-agent)%" } }
//! ```

mod format;

use std::{
    fs::OpenOptions,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    pin::Pin,
    sync::{mpsc, Arc, OnceLock},
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
    /// Lines queued for the writer at most (default 8192); beyond that lines are
    /// dropped.
    #[serde(default = "default_buffer")]
    pub buffer_lines: std::num::NonZeroUsize,
}

/// Stdout, the default text format.
impl Default for AccessLogConfig {
    fn default() -> Self {
        Self {
            name: None,
            path: None,
            format: LogFormat::default(),
            buffer_lines: default_buffer(),
        }
    }
}

fn default_buffer() -> std::num::NonZeroUsize {
    std::num::NonZeroUsize::new(8192).unwrap_or(std::num::NonZeroUsize::MIN)
}

/// The writer's end of the queue, made with the first line; the writer thread ends
/// when the last layer clone holding it is dropped.
#[derive(Debug)]
struct Sink {
    /// The queue to the writer thread once started; `None` if it could not start.
    tx: OnceLock<Option<mpsc::SyncSender<String>>>,
    path: Option<PathBuf>,
    buffer_lines: usize,
    format: format::Compiled,
    counters: Arc<AccessLogCounters>,
}

impl Sink {
    fn send(&self, line: String) {
        let tx = self.tx.get_or_init(|| self.start());
        match tx {
            Some(tx) if tx.try_send(line).is_ok() => {}
            _ => self.counters.dropped.inc(),
        }
    }

    /// Starts the writer thread (which opens the file).
    fn start(&self) -> Option<mpsc::SyncSender<String>> {
        let (tx, rx) = mpsc::sync_channel::<String>(self.buffer_lines);
        let path = self.path.clone();
        let counters = self.counters.clone();
        match std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(&rx, path.as_deref(), &counters))
        {
            Ok(_) => Some(tx),
            Err(error) => {
                tracing::error!(%error, "access log writer thread could not start");
                None
            }
        }
    }
}

/// Applies [`AccessLog`] to a service.
///
/// # Example
/// ```
/// use proxy_core::{Body, BoxError, HttpRequest};
/// use proxy_filters::access_log::{AccessLogConfig, AccessLogLayer, LogFormat};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let path = std::env::temp_dir().join(format!("access-{}.log", std::process::id()));
/// let cfg = AccessLogConfig {
///     path: Some(path.clone()),
///     format: LogFormat::Text("%METHOD% %PATH% %STATUS%".into()),
///     ..Default::default()
/// };
/// let layer = AccessLogLayer::try_from(&cfg)?;
/// assert!(!path.exists(), "nothing is opened before the first line");
/// let svc = ServiceBuilder::new()
///     .layer(layer)
///     .service(service_fn(|_req: HttpRequest| async {
///         Ok::<_, BoxError>(http::Response::new(Body::empty()))
///     }));
/// let resp = svc.oneshot(http::Request::get("/hello").body(Body::empty())?).await?;
/// drop(resp); // the line is written when the response body ends or is dropped
/// for _ in 0..200 {
///     if std::fs::read_to_string(&path).is_ok_and(|t| t.ends_with('\n')) { break }
///     std::thread::sleep(std::time::Duration::from_millis(10));
/// }
/// assert_eq!(std::fs::read_to_string(&path)?, "GET /hello 200\n");
/// std::fs::remove_file(&path)?;
/// # Ok::<_, BoxError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct AccessLogLayer {
    sink: Arc<Sink>,
}

impl AccessLogLayer {
    /// Validates `cfg`, counting lines in `counters`. Opens no file and starts no
    /// thread: the writer starts with the first line.
    ///
    /// # Errors
    /// An unknown `%FIELD%`, a bad header name in `%REQ()%`, a `path` whose directory
    /// does not exist or that is a directory, naming the field.
    pub fn new(
        cfg: &AccessLogConfig,
        counters: Arc<AccessLogCounters>,
    ) -> Result<Self, ConfigError> {
        let format = format::Compiled::new(&cfg.format)?;
        if let Some(p) = &cfg.path {
            check_path(p)?;
        }
        Ok(Self {
            sink: Arc::new(Sink {
                tx: OnceLock::new(),
                path: cfg.path.clone(),
                buffer_lines: cfg.buffer_lines.get(),
                format,
                counters,
            }),
        })
    }
}

impl TryFrom<&AccessLogConfig> for AccessLogLayer {
    type Error = ConfigError;

    /// [`AccessLogLayer::new`] with counters of its own.
    fn try_from(cfg: &AccessLogConfig) -> Result<Self, ConfigError> {
        Self::new(cfg, Arc::default())
    }
}

/// What can be checked of a log file without touching it: its directory exists, and
/// it is not a directory itself.
fn check_path(p: &Path) -> Result<(), ConfigError> {
    let bad = |why: &str| ConfigError::invalid("path", format!("{}: {why}", p.display()));
    if p.is_dir() {
        return Err(bad("is a directory"));
    }
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(bad("its directory does not exist"));
    }
    Ok(())
}

fn open(path: Option<&Path>) -> std::io::Result<Box<dyn Write + Send>> {
    Ok(match path {
        Some(p) => Box::new(OpenOptions::new().create(true).append(true).open(p)?),
        None => Box::new(std::io::stdout()),
    })
}

/// The writer thread: opens the file, then writes batches of lines, flushing when
/// the queue is empty. Ends when every sender is gone.
fn write_lines(rx: &mpsc::Receiver<String>, path: Option<&Path>, counters: &AccessLogCounters) {
    let mut out: Option<BufWriter<Box<dyn Write + Send>>> = None;
    let mut reported = false;
    while let Ok(line) = rx.recv() {
        if out.is_none() {
            match open(path) {
                Ok(w) => out = Some(BufWriter::with_capacity(64 * 1024, w)),
                Err(error) if !reported => {
                    reported = true;
                    tracing::error!(path = ?path, %error, "access log cannot be opened");
                }
                Err(_) => {}
            }
        }
        let Some(w) = out.as_mut() else {
            counters.errors.inc();
            while rx.try_recv().is_ok() {
                counters.errors.inc();
            }
            continue;
        };
        let mut write = |line: String| match w.write_all(line.as_bytes()) {
            Ok(()) => counters.written.inc(),
            Err(_) => counters.errors.inc(),
        };
        write(line);
        while let Ok(line) = rx.try_recv() {
            write(line);
        }
        if w.flush().is_err() {
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
        record.proxy_error = resp
            .headers()
            .get(proxy_core::proxy::PROXY_ERROR_HEADER)
            .cloned();
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
