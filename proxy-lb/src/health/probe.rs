//! Active probes: an HTTP/1.1 GET with expected statuses, or a TCP connect.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::ConfigError;

/// A probe: `tcp` (the default) or `{http: {...}}`.
///
/// ```yaml
/// probe: {http: {path: /healthz, expected_statuses: [200, 204]}}
/// probe: tcp
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ProbeConfig {
    /// The TCP connect (with the cluster's transport) succeeds.
    #[default]
    Tcp,
    /// An HTTP `GET` answers with one of the expected statuses.
    Http(HttpProbeConfig),
}

/// An HTTP probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpProbeConfig {
    /// The path requested.
    #[serde(default = "default_path")]
    pub path: String,
    /// Statuses that pass.
    #[serde(default = "default_statuses")]
    pub expected_statuses: Vec<u16>,
    /// The `Host` header (`:authority` over HTTP/2); the endpoint address when absent.
    #[serde(default)]
    pub host: Option<String>,
    /// The HTTP version spoken: `http1` (default) or `http2` (prior knowledge, for
    /// h2c or gRPC backends; over TLS the transport's ALPN must agree).
    #[serde(default)]
    pub version: HttpVersion,
}

/// The HTTP version of a probe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpVersion {
    /// HTTP/1.1.
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge.
    Http2,
}

/// `GET /` over HTTP/1.1, expecting 200: what `{http: {}}` means.
impl Default for HttpProbeConfig {
    fn default() -> Self {
        Self {
            path: default_path(),
            expected_statuses: default_statuses(),
            host: None,
            version: HttpVersion::default(),
        }
    }
}

fn default_path() -> String {
    "/".into()
}

fn default_statuses() -> Vec<u16> {
    vec![200]
}

impl ProbeConfig {
    /// Checks the values serde cannot; the field path is relative to the probe.
    ///
    /// # Errors
    /// A path not starting with `/` or holding control characters or spaces, an empty
    /// status list, a status outside 100-599, a bad host.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let Self::Http(h) = self else {
            return Ok(());
        };
        if !h.path.starts_with('/') || h.path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(ConfigError::invalid(
                "http.path",
                format!(
                    "{:?} must start with / and hold no spaces or control bytes",
                    h.path
                ),
            ));
        }
        if h.expected_statuses.is_empty() {
            return Err(ConfigError::invalid(
                "http.expected_statuses",
                "must not be empty",
            ));
        }
        if let Some((i, s)) = h
            .expected_statuses
            .iter()
            .enumerate()
            .find(|(_, s)| !(100..=599).contains(*s))
        {
            return Err(ConfigError::invalid(
                format!("http.expected_statuses[{i}]"),
                format!("{s} is not an HTTP status"),
            ));
        }
        if let Some(host) = &h.host {
            if host.is_empty() || http::HeaderValue::from_str(host).is_err() || host.contains(' ') {
                return Err(ConfigError::invalid(
                    "http.host",
                    format!("{host:?} is not a valid host"),
                ));
            }
        }
        Ok(())
    }
}

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The connection could not be opened.
    #[error("connect failed: {0}")]
    Connect(String),
    /// The probe took longer than its timeout.
    #[error("probe timed out")]
    Timeout,
    /// Reading or writing failed.
    #[error("probe i/o failed")]
    Io(#[source] std::io::Error),
    /// The answer was not an HTTP response head.
    #[error("malformed response")]
    Malformed,
    /// The status was not one of the expected ones.
    #[error("unexpected status {0}")]
    Status(u16),
    /// The probe passed, but slower than an endpoint ejected for latency must answer.
    #[error("probe took {took:?}, above the latency cutoff {cutoff:?}")]
    Slow {
        /// How long the probe took.
        took: std::time::Duration,
        /// The cutoff it had to answer within.
        cutoff: std::time::Duration,
    },
}

impl ProbeError {
    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Connect(_) => "connect_failure",
            Self::Timeout => "timeout",
            Self::Io(_) | Self::Malformed => "bad_response",
            Self::Status(_) => "unexpected_status",
            Self::Slow { .. } => "slow",
        }
    }
}

/// The longest response head a probe reads.
const MAX_HEAD: usize = 16 * 1024;

/// Sends one HTTP/1.1 probe over `stream` and checks the status.
///
/// # Errors
/// I/O failure, a malformed head or an unexpected status.
pub async fn http_probe<S>(
    stream: &mut S,
    cfg: &HttpProbeConfig,
    default_host: &str,
) -> Result<u16, ProbeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let host = cfg.host.as_deref().unwrap_or(default_host);
    let req = format!(
        "GET {} HTTP/1.1\r\nhost: {host}\r\nuser-agent: proxy-health-check\r\nconnection: close\r\n\r\n",
        cfg.path
    );
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(ProbeError::Io)?;
    stream.flush().await.map_err(ProbeError::Io)?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let parsed = {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&buf) {
                Ok(httparse::Status::Complete(end)) => Some((resp.code, end)),
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => None,
                _ => return Err(ProbeError::Malformed),
            }
        };
        match parsed {
            Some((Some(code), end)) if (100..200).contains(&code) => {
                // An interim answer: the final one follows.
                buf.drain(..end);
                continue;
            }
            Some((Some(code), _)) => {
                return if cfg.expected_statuses.contains(&code) {
                    Ok(code)
                } else {
                    Err(ProbeError::Status(code))
                };
            }
            Some((None, _)) => return Err(ProbeError::Malformed),
            None => {}
        }
        let n = stream.read(&mut chunk).await.map_err(ProbeError::Io)?;
        if n == 0 {
            return Err(ProbeError::Malformed);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sends one HTTP/2 probe (prior knowledge) over `stream` and checks the status.
///
/// # Errors
/// A failed handshake or request, or an unexpected status.
pub async fn http2_probe<S>(
    stream: S,
    cfg: &HttpProbeConfig,
    default_host: &str,
) -> Result<u16, ProbeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .map_err(|_| ProbeError::Malformed)?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let host = cfg.host.as_deref().unwrap_or(default_host);
    let result = async {
        let req = http::Request::get(format!("http://{host}{}", cfg.path))
            .header(http::header::USER_AGENT, "proxy-health-check")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|_| ProbeError::Malformed)?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|_| ProbeError::Malformed)?;
        let code = resp.status().as_u16();
        if cfg.expected_statuses.contains(&code) {
            Ok(code)
        } else {
            Err(ProbeError::Status(code))
        }
    }
    .await;
    driver.abort();
    result
}

/// Runs `fut` under `limit`, mapping the timeout to [`ProbeError::Timeout`].
///
/// # Errors
/// [`ProbeError::Timeout`] or the probe's own error.
pub async fn with_timeout<F, T>(limit: Duration, fut: F) -> Result<T, ProbeError>
where
    F: std::future::Future<Output = Result<T, ProbeError>>,
{
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or(Err(ProbeError::Timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn probe_with(
        answer: &'static [u8],
        cfg: &HttpProbeConfig,
    ) -> (Result<u16, ProbeError>, String) {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let srv = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let n = server.read(&mut buf).await.unwrap_or(0);
            let _ = server.write_all(answer).await;
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let r = http_probe(&mut client, cfg, "10.0.0.1:80").await;
        drop(client);
        (r, srv.await.unwrap_or_default())
    }

    fn cfg(statuses: &[u16]) -> HttpProbeConfig {
        HttpProbeConfig {
            path: "/healthz".into(),
            expected_statuses: statuses.to_vec(),
            host: None,
            version: HttpVersion::Http1,
        }
    }

    #[tokio::test]
    async fn statuses_are_checked() {
        let (r, req) = probe_with(
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            &cfg(&[200]),
        )
        .await;
        assert_eq!(r.ok(), Some(200));
        assert!(
            req.starts_with("GET /healthz HTTP/1.1\r\nhost: 10.0.0.1:80\r\n"),
            "{req}"
        );
        let (r, _) = probe_with(b"HTTP/1.1 503 No\r\n\r\n", &cfg(&[200])).await;
        assert!(matches!(r, Err(ProbeError::Status(503))));
        let (r, _) = probe_with(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            &cfg(&[204]),
        )
        .await;
        assert_eq!(r.ok(), Some(204), "interim answers are skipped");
    }

    #[tokio::test]
    async fn garbage_and_truncation_fail() {
        let (r, _) = probe_with(b"SSH-2.0-OpenSSH\r\n\r\n", &cfg(&[200])).await;
        assert!(matches!(r, Err(ProbeError::Malformed)));
        let (r, _) = probe_with(b"HTTP/1.1 200", &cfg(&[200])).await;
        assert!(matches!(r, Err(ProbeError::Malformed)));
        let (r, _) = probe_with(b"", &cfg(&[200])).await;
        assert!(r.is_err());
    }

    #[tokio::test]
    async fn timeouts_are_reported() {
        let r = with_timeout(Duration::from_millis(10), async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<(), ProbeError>(())
        })
        .await;
        assert!(matches!(r, Err(ProbeError::Timeout)));
        assert_eq!(ProbeError::Timeout.label(), "timeout");
    }

    #[tokio::test]
    async fn http2_probes_speak_prior_knowledge() {
        use hyper::service::service_fn;
        let serve = |status: u16| {
            let (client, server) = tokio::io::duplex(64 * 1024);
            tokio::spawn(async move {
                let svc = service_fn(
                    move |req: http::Request<hyper::body::Incoming>| async move {
                        assert_eq!(req.uri().path(), "/healthz");
                        let mut resp =
                            http::Response::new(http_body_util::Empty::<bytes::Bytes>::new());
                        *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
                        Ok::<_, std::convert::Infallible>(resp)
                    },
                );
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(server), svc)
                        .await;
            });
            client
        };
        let mut c = cfg(&[200]);
        c.version = HttpVersion::Http2;
        assert_eq!(http2_probe(serve(200), &c, "h").await.ok(), Some(200));
        assert!(matches!(
            http2_probe(serve(503), &c, "h").await,
            Err(ProbeError::Status(503))
        ));
        // An HTTP/1.1-only peer fails the handshake.
        let (client, mut server) = tokio::io::duplex(1024);
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let _ = server.read(&mut buf).await;
            let _ = server.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        });
        assert!(http2_probe(client, &c, "h").await.is_err());
    }

    #[test]
    fn validation() {
        let p = |yaml: &str| {
            proxy_core::config::from_yaml::<ProbeConfig>(yaml)
                .unwrap()
                .validate()
                .map_err(|e| e.field().to_owned())
        };
        assert!(p("tcp").is_ok());
        assert!(p("{http: {}}").is_ok());
        assert_eq!(p("{http: {path: \"/a b\"}}").unwrap_err(), "http.path");
        assert_eq!(p("{http: {host: \"\"}}").unwrap_err(), "http.host");
        assert!(proxy_core::config::from_yaml::<ProbeConfig>("{http: {}, tcp: {}}").is_err());
        assert!(proxy_core::config::from_yaml::<ProbeConfig>("{tcp: {}}").is_err());
    }
}
