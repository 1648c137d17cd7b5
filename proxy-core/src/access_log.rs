//! The access log: one line per request, JSON or text, appended to a file or stdout.
//!
//! Each line is written with a single `write` on a file opened for appending, so lines
//! from several worker threads never interleave and no lock is taken.

use std::{
    fmt::Write as _,
    fs::{File, OpenOptions},
    io::Write as _,
    net::SocketAddr,
    time::{Duration, SystemTime},
};

use http::{Method, StatusCode, Uri, Version};

use crate::config::{AccessLogConfig, AccessLogFormat};

/// An open access log.
#[derive(Debug)]
pub struct AccessLog {
    format: AccessLogFormat,
    file: Option<File>,
}

/// One request's facts for the access log.
#[derive(Debug)]
pub struct AccessRecord<'a> {
    /// Listener name.
    pub listener: &'a str,
    /// Client address.
    pub peer: Option<SocketAddr>,
    /// Request method.
    pub method: &'a Method,
    /// Request URI.
    pub uri: &'a Uri,
    /// Request HTTP version.
    pub version: Version,
    /// Response status.
    pub status: StatusCode,
    /// Response body bytes sent.
    pub bytes_sent: u64,
    /// Time from request head to the end of the response.
    pub duration: Duration,
    /// Matched route name.
    pub route: Option<&'a str>,
    /// Why the proxy answered itself, if it did.
    pub proxy_error: Option<&'a str>,
}

impl AccessLog {
    /// Opens the log described by `cfg`.
    ///
    /// # Errors
    /// When the file cannot be opened for appending.
    pub fn open(cfg: &AccessLogConfig) -> std::io::Result<Self> {
        let file = match &cfg.path {
            Some(p) => Some(OpenOptions::new().create(true).append(true).open(p)?),
            None => None,
        };
        Ok(Self {
            format: cfg.format,
            file,
        })
    }

    /// Writes one record.
    pub fn write(&self, r: &AccessRecord<'_>) {
        let mut line = String::with_capacity(256);
        let ts = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let peer = r.peer.map(|p| p.to_string()).unwrap_or_default();
        match self.format {
            AccessLogFormat::Json => {
                let v = serde_json::json!({
                    "ts": ts.as_secs_f64(),
                    "listener": r.listener,
                    "peer": peer,
                    "method": r.method.as_str(),
                    "uri": r.uri.to_string(),
                    "version": format!("{:?}", r.version),
                    "status": r.status.as_u16(),
                    "bytes_sent": r.bytes_sent,
                    "duration_ms": r.duration.as_secs_f64() * 1000.0,
                    "route": r.route,
                    "proxy_error": r.proxy_error,
                });
                let _ = write!(line, "{v}");
            }
            AccessLogFormat::Text => {
                let _ = write!(
                    line,
                    "{:.3} {} {} \"{} {} {:?}\" {} {} {:.3}ms route={} error={}",
                    ts.as_secs_f64(),
                    r.listener,
                    if peer.is_empty() { "-" } else { &peer },
                    r.method,
                    r.uri,
                    r.version,
                    r.status.as_u16(),
                    r.bytes_sent,
                    r.duration.as_secs_f64() * 1000.0,
                    r.route.unwrap_or("-"),
                    r.proxy_error.unwrap_or("-"),
                );
            }
        }
        line.push('\n');
        let _ = match &self.file {
            Some(f) => (&*f).write_all(line.as_bytes()),
            None => std::io::stdout().lock().write_all(line.as_bytes()),
        };
    }
}
