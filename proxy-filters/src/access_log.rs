//! An access log filter: one line per request, as a text template with `%FIELD%`
//! placeholders or as JSON lines, written by a writer thread off the request path.
//!
//! This is one of the two attachment points of [`proxy_core::access_log`], which
//! holds the record, the formats (the field list is there) and the writer, and says
//! which to use when: the config's top-level `access_log` sees every request of every
//! listener, including those the connection loop answers itself; this filter is
//! placed per listener (`http_filters`) or per route (`routes[].filters`), each with
//! its own format and file, and sees the requests that reach it (with the local
//! replies of the filters after it).
//!
//! The line is formatted when the response body ends (or is dropped), so it carries
//! the bytes sent and the full duration, into a reused buffer handed to the log's
//! writer thread; when the writer falls behind, lines are dropped and counted in
//! `proxy_filters_access_log_lines_total{result="dropped"}`, never waited for.
//!
//! Building the layer starts nothing and opens nothing (so `--validate` has no side
//! effects): the writer thread starts with the first line, and opens the file (append,
//! created if missing) itself. At build the file's directory must exist; a file that
//! cannot be opened later is logged and its lines counted in
//! `proxy_filters_access_log_write_errors_total`, the open retried with the next line.
//! A relative `path` in a config file resolves from the file's directory.
//!
//! `format` is `text` (the default, [`DEFAULT_TEXT`]), `json` (the fields of
//! [`DEFAULT_JSON`]), `{text: TEMPLATE}` or `{json: {KEY: TEMPLATE}}`; the
//! placeholders are those of [`proxy_core::access_log`].
//!
//! ```yaml
//! http_filters:
//!   - typed: access_log
//!     config:
//!       path: /var/log/proxy/access.log     # absent: stdout; relative: from the config file
//!       format: { json: { status: "%STATUS%", path: "%PATH%", ua: "%REQ(user-agent)%" } }
//! ```

use std::{
    num::NonZeroUsize,
    path::PathBuf,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use proxy_core::{
    access_log::{self as core_log, Defaults, Formatter, LineCounters, Record, Writer},
    Body, BoxError, HttpRequest, HttpResponse,
};
use serde::{Deserialize, Serialize};
use tower_service::Service;

pub use proxy_core::access_log::LogFormat;

use crate::{metrics::AccessLogCounters, ConfigError};

/// The registered name.
pub const NAME: &str = "access_log";

/// The default text line (`format: text`, or no `format`).
pub const DEFAULT_TEXT: &str = "[%START_TIME%] \"%METHOD% %PATH% %PROTOCOL%\" %STATUS% %BYTES_SENT% %DURATION% %PEER% \"%AUTHORITY%\" \"%REQ(user-agent)%\" %ROUTE% %PROXY_ERROR%";

/// The default JSON fields (`format: json`, or `{json: {}}`).
pub const DEFAULT_JSON: &[(&str, &str)] = &[
    ("start_time", "%START_TIME%"),
    ("method", "%METHOD%"),
    ("path", "%PATH%"),
    ("protocol", "%PROTOCOL%"),
    ("status", "%STATUS%"),
    ("bytes_sent", "%BYTES_SENT%"),
    ("duration_ms", "%DURATION%"),
    ("peer", "%PEER%"),
    ("authority", "%AUTHORITY%"),
    ("route", "%ROUTE%"),
    ("proxy_error", "%PROXY_ERROR%"),
];

const DEFAULTS: Defaults = Defaults {
    text: DEFAULT_TEXT,
    json: DEFAULT_JSON,
};

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
    pub buffer_lines: NonZeroUsize,
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

fn default_buffer() -> NonZeroUsize {
    core_log::QUEUE_LINES
}

/// The core's writer counts into the filter's registered counters.
impl LineCounters for AccessLogCounters {
    fn line_written(&self) {
        self.written.inc();
    }
    fn line_dropped(&self) {
        self.dropped.inc();
    }
    fn write_failed(&self) {
        self.errors.inc();
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
    log: Arc<core_log::AccessLog>,
    listener: Option<Arc<str>>,
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
        let core = |e: proxy_core::ConfigError| ConfigError::invalid(e.path, e.reason);
        let formatter = Formatter::new(&cfg.format, &DEFAULTS).map_err(core)?;
        let writer = Writer::new(cfg.path.clone(), cfg.buffer_lines, counters).map_err(core)?;
        Ok(Self {
            log: Arc::new(core_log::AccessLog::from_parts(formatter, writer)),
            listener: None,
        })
    }

    /// Names the listener in `%LISTENER%`.
    #[must_use]
    pub fn with_listener(mut self, name: Option<&str>) -> Self {
        self.listener = name.map(Arc::from);
        self
    }
}

impl TryFrom<&AccessLogConfig> for AccessLogLayer {
    type Error = ConfigError;

    /// [`AccessLogLayer::new`] with counters of its own.
    fn try_from(cfg: &AccessLogConfig) -> Result<Self, ConfigError> {
        Self::new(cfg, Arc::default())
    }
}

impl<S> tower_layer::Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> AccessLog<S> {
        AccessLog {
            inner,
            log: self.log.clone(),
            listener: self.listener.clone(),
        }
    }
}

/// Logs one line per request (see [`self`]).
#[derive(Debug, Clone)]
pub struct AccessLog<S> {
    inner: S,
    log: Arc<core_log::AccessLog>,
    listener: Option<Arc<str>>,
}

/// A request's record from its arrival to the end of its response.
struct Pending {
    record: Record,
    started: Instant,
    log: Arc<core_log::AccessLog>,
}

impl Pending {
    fn finish(mut self) {
        self.record.duration = self.started.elapsed();
        self.log.log(&self.record);
    }
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
        let mut record = self.log.request(&req);
        record.listener = self.listener.clone();
        let pending = Pending {
            record,
            started: Instant::now(),
            log: self.log.clone(),
        };
        ResponseFuture {
            fut: self.inner.call(req),
            pending: Some(pending),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`AccessLog`]: records the response head and wraps
    /// the body to count bytes and log at its end.
    pub struct ResponseFuture<F> {
        #[pin]
        fut: F,
        pending: Option<Pending>,
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
        let Some(mut pending) = this.pending.take() else {
            return Poll::Ready(result);
        };
        let resp = match result {
            Ok(resp) => resp,
            Err(e) => {
                // The stack edge turns the error into a local reply; log it as 500.
                pending.record.status = 500;
                pending.finish();
                return Poll::Ready(Err(e));
            }
        };
        pending.record.response(&resp, pending.log.formatter());
        let (parts, body) = resp.into_parts();
        let body = Body::new(LoggedBody {
            inner: body,
            pending: Some(pending),
        });
        Poll::Ready(Ok(HttpResponse::from_parts(parts, body)))
    }
}

/// A response body that counts its bytes and logs the line when it ends or drops.
struct LoggedBody {
    inner: Body,
    pending: Option<Pending>,
}

impl LoggedBody {
    fn finish(&mut self) {
        if let Some(p) = self.pending.take() {
            p.finish();
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
                if let (Some(d), Some(p)) = (f.data_ref(), this.pending.as_mut()) {
                    p.record.bytes_sent += d.len() as u64;
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
