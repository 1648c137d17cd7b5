//! Access logs: one line per request, as a text template with `%FIELD%` placeholders
//! or as JSON, written by a thread of its own, off the request path.
//!
//! # Which to use when
//!
//! One implementation, two attachment points:
//!
//! - **The top-level `access_log`** of the config ([`AccessLog`], written from the
//!   server's connection loops): sees every request of every listener, HTTP/1.1 and
//!   HTTP/2, including those the connection loop answers itself and no filter ever
//!   sees (a malformed or oversized head: 400, 431; a head that came too slowly: 408).
//!   Use it for one log of everything the proxy served.
//! - **proxy-filters' `access_log` HTTP filter**: placed per listener
//!   (`http_filters`) or per route (`routes[].filters`), each with its own format and
//!   file; it sees the requests that reach it, including local replies of the filters
//!   after it. Use it for a log of one listener or route, or a format of its own.
//!
//! ```yaml
//! access_log: { format: json, path: logs/access.log }   # path absent: stdout
//! # format: text | json | {text: "<template>"} | {json: {KEY: "<template>", ...}}
//! ```
//!
//! # Parts
//!
//! Both are built from the same three parts, public for other attachment points:
//! a [`Record`] (what one line knows of a request), a [`Formatter`] (a [`LogFormat`]
//! compiled at load, rendering a record into a reused buffer) and a [`Writer`] (a
//! bounded queue to one thread per log). Per request a log costs one record, one
//! format into a pooled buffer and one queue push: no lock, no allocation once warm,
//! no I/O on the worker. When the writer falls behind, lines are dropped and counted
//! ([`LineCounters`]), never waited for.
//!
//! Making a log opens nothing and starts nothing (so `--validate` has no side
//! effects): the writer thread starts with the first line and opens the file
//! (append, created if missing) itself. At load the file's directory must exist; a
//! file that cannot be opened later is logged, its lines counted as failed, and the
//! open retried with the next line. A relative `path` resolves from the config
//! file's directory.
//!
//! # Fields
//!
//! `%START_TIME%` (RFC 3339, UTC, milliseconds), `%START_TIME_UNIX%` (seconds since
//! the epoch, milliseconds), `%METHOD%`, `%URI%` (the request target as received),
//! `%PATH%` (path and query), `%PROTOCOL%` (`HTTP/1.1`, `HTTP/2.0`), `%STATUS%`,
//! `%BYTES_SENT%` (response body), `%DURATION%` (milliseconds), `%PEER%` (address and
//! port), `%PEER_IP%`, `%AUTHORITY%`, `%LISTENER%`, `%ROUTE%`, `%UPSTREAM_CLUSTER%`,
//! `%PROXY_ERROR%` (why the proxy answered itself), `%RPC_SERVICE%`, `%RPC_METHOD%`,
//! `%REQ(name)%`, `%RESP(name)%` (header values), and Envoy's `%RESPONSE_CODE%`,
//! `%DOWNSTREAM_REMOTE_ADDRESS%`, `%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%`,
//! `%ROUTE_NAME%`, `%REQ(:METHOD)%`, `%REQ(:PATH)%`, `%REQ(:AUTHORITY)%`. `%%` is a
//! literal `%`. A missing value prints `-` in text and `null` in JSON. In JSON a value
//! that is exactly one of `%STATUS%`, `%BYTES_SENT%`, `%DURATION%`,
//! `%START_TIME_UNIX%` is a number; keys and values are escaped.
//!
//! The top-level log's defaults ([`DEFAULTS`]): `text` is
//! `1717171717.123 main 10.0.0.1:5000 "GET /a?b HTTP/1.1" 200 512 1.234ms route=api error=-`;
//! `json` has `ts`, `listener`, `peer`, `method`, `uri`, `version`, `status`,
//! `bytes_sent`, `duration_ms`, `route` and `proxy_error`.
//!
//! # Example
//! ```
//! use proxy_core::{access_log::{AccessLog, LogFormat, Record}, config::AccessLogConfig};
//!
//! let dir = std::env::temp_dir().join(format!("core-access-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("access.log");
//! let cfg = AccessLogConfig {
//!     format: LogFormat::Text("%METHOD% %PATH% %STATUS%".into()),
//!     path: Some(path.clone()),
//! };
//! let log = AccessLog::new(&cfg)?;
//! assert!(!log.writer().is_started() && !path.exists(), "nothing before the first line");
//!
//! let req = http::Request::get("/hello").body(())?;
//! let mut record = log.request(&req);
//! record.response(&http::Response::new(()), log.formatter());
//! log.log(&record);
//! for _ in 0..200 {
//!     if std::fs::read_to_string(&path).is_ok_and(|t| t.ends_with('\n')) { break }
//!     std::thread::sleep(std::time::Duration::from_millis(10));
//! }
//! assert_eq!(std::fs::read_to_string(&path)?, "GET /hello 200\n");
//! std::fs::remove_dir_all(&dir)?;
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```

mod format;
mod record;
mod template;
mod writer;

#[cfg(test)]
mod tests;

use std::{num::NonZeroUsize, sync::Arc};

pub use format::{Defaults, Formatter, LogFormat};
pub use record::Record;
pub use writer::{LineCounters, LineCounts, Writer};

use crate::{
    config::{AccessLogConfig, Config},
    ConfigError,
};

/// The top-level log's `text` and `json`: the line the proxy has always written.
pub const DEFAULTS: Defaults = Defaults {
    text: "%START_TIME_UNIX% %LISTENER% %PEER% \"%METHOD% %URI% %PROTOCOL%\" %STATUS% %BYTES_SENT% %DURATION%ms route=%ROUTE% error=%PROXY_ERROR%",
    json: &[
        ("ts", "%START_TIME_UNIX%"),
        ("listener", "%LISTENER%"),
        ("peer", "%PEER%"),
        ("method", "%METHOD%"),
        ("uri", "%URI%"),
        ("version", "%PROTOCOL%"),
        ("status", "%STATUS%"),
        ("bytes_sent", "%BYTES_SENT%"),
        ("duration_ms", "%DURATION%"),
        ("route", "%ROUTE%"),
        ("proxy_error", "%PROXY_ERROR%"),
    ],
};

/// Lines the top-level log queues at most before dropping.
pub const QUEUE_LINES: NonZeroUsize = match NonZeroUsize::new(8192) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

/// An access log: a [`Formatter`] and a [`Writer`]. Shared (`Arc`) by everything
/// that logs to it; the writer thread ends when it is dropped.
#[derive(Debug)]
pub struct AccessLog {
    formatter: Formatter,
    writer: Writer,
}

impl AccessLog {
    /// The top-level log `cfg` describes (defaults [`DEFAULTS`]), counting its lines
    /// in a [`LineCounts`] of its own. Opens nothing and starts nothing.
    ///
    /// # Errors
    /// A bad template (`format.text`, `format.json.KEY`) or `path` (its directory does
    /// not exist, or it is a directory). Relative paths are taken as they are: see
    /// [`AccessLog::from_config`].
    pub fn new(cfg: &AccessLogConfig) -> Result<Self, ConfigError> {
        Self::with_counters(cfg, Arc::new(LineCounts::default()))
    }

    /// [`AccessLog::new`] counting lines in `counters`.
    ///
    /// # Errors
    /// As [`AccessLog::new`].
    pub fn with_counters(
        cfg: &AccessLogConfig,
        counters: Arc<dyn LineCounters>,
    ) -> Result<Self, ConfigError> {
        let formatter = Formatter::new(&cfg.format, &DEFAULTS)?;
        let writer = Writer::new(cfg.path.clone(), QUEUE_LINES, counters)?;
        Ok(Self::from_parts(formatter, writer))
    }

    /// The top-level log of `config`, if it has one, its path resolved from the
    /// config file's directory.
    ///
    /// # Errors
    /// As [`AccessLog::new`], the path from the document root (`access_log.format.text`).
    pub fn from_config(
        config: &Config,
        counters: Arc<dyn LineCounters>,
    ) -> Result<Option<Self>, ConfigError> {
        let Some(cfg) = &config.access_log else {
            return Ok(None);
        };
        let cfg = AccessLogConfig {
            format: cfg.format.clone(),
            path: cfg.path.as_deref().map(|p| config.resolve_path(p)),
        };
        Self::with_counters(&cfg, counters)
            .map(Some)
            .map_err(|e| e.within("access_log"))
    }

    /// A log of `formatter`'s lines written by `writer` (another attachment point's).
    pub fn from_parts(formatter: Formatter, writer: Writer) -> Self {
        Self { formatter, writer }
    }

    /// The compiled format.
    pub fn formatter(&self) -> &Formatter {
        &self.formatter
    }

    /// The writer.
    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// A record of `req` arriving now: its facts and the headers the format names.
    pub fn request<B>(&self, req: &http::Request<B>) -> Record {
        let mut r = Record::new();
        r.request(req, &self.formatter);
        r
    }

    /// Formats `record` into a pooled buffer and queues it; never blocks.
    pub fn log(&self, record: &Record) {
        self.writer
            .write_with(|line| self.formatter.format(record, line));
    }
}
