//! An HTTP webhook healing sink: `POST <url>` with the report as JSON; an answer
//! `{"action": "remove"}` asks for the endpoint's removal.

use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};

use super::{EjectionReport, HealingAction, HealingError, HealingSink, ReportFuture};
use crate::ConfigError;

/// The webhook's config.
///
/// ```yaml
/// webhook: {url: "http://127.0.0.1:9000/ejections", timeout: 2s}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// An `http://host:port/path` URL.
    pub url: String,
    /// Time limit of one report (connect, send, answer).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(2)
}

impl WebhookConfig {
    /// Checks the URL and timeout.
    ///
    /// # Errors
    /// A URL that is not `http://host[:port]/...`, or a zero timeout, naming the
    /// field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        WebhookSink::new(self).map(|_| ())
    }
}

/// Posts each ejection report as JSON to a URL.
#[derive(Debug, Clone)]
pub struct WebhookSink {
    authority: String,
    path: String,
    timeout: Duration,
}

/// The longest answer body read.
const MAX_ANSWER: usize = 64 * 1024;

impl WebhookSink {
    /// A sink from its config.
    ///
    /// # Errors
    /// A bad URL or timeout, naming the field.
    pub fn new(cfg: &WebhookConfig) -> Result<Self, ConfigError> {
        let bad = |reason: String| ConfigError::invalid("url", reason);
        let uri: Uri = cfg
            .url
            .parse()
            .map_err(|e| bad(format!("{:?} is not a URL: {e}", cfg.url)))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad(format!("{:?}: only http:// is supported", cfg.url)));
        }
        let Some(auth) = uri.authority() else {
            return Err(bad(format!("{:?} has no host", cfg.url)));
        };
        if auth.as_str().contains('@') {
            return Err(bad(format!(
                "{:?}: credentials in the URL are not supported",
                cfg.url
            )));
        }
        if cfg.timeout.is_zero() || cfg.timeout > Duration::from_secs(3600) {
            return Err(ConfigError::invalid(
                "timeout",
                "must be above zero and at most 1h",
            ));
        }
        let port = auth.port_u16().unwrap_or(80);
        Ok(Self {
            authority: format!("{}:{port}", auth.host()),
            path: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
            timeout: cfg.timeout,
        })
    }

    async fn post(
        authority: String,
        path: String,
        body: Vec<u8>,
    ) -> Result<HealingAction, HealingError> {
        let unreachable =
            |e: Box<dyn std::error::Error + Send + Sync>| HealingError::Unreachable(e);
        let tcp = tokio::net::TcpStream::connect(&authority)
            .await
            .map_err(|e| unreachable(e.into()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| unreachable(e.into()))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = Request::post(path)
            .header(header::HOST, authority.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, "proxy-healing")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| unreachable(e.into()))?;
        let result = async {
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| unreachable(e.into()))?;
            let status = resp.status();
            let bytes = Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(unreachable)?
                .to_bytes();
            if !status.is_success() {
                return Err(HealingError::Status(status.as_u16()));
            }
            Ok(parse_action(&bytes))
        }
        .await;
        driver.abort();
        result
    }
}

/// `{"action": "remove"}` asks for removal; anything else keeps the endpoint.
fn parse_action(body: &[u8]) -> HealingAction {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        action: Option<String>,
    }
    match serde_json::from_slice::<Answer>(body) {
        Ok(Answer { action: Some(a) }) if a.eq_ignore_ascii_case("remove") => HealingAction::Remove,
        _ => HealingAction::Keep,
    }
}

impl HealingSink for WebhookSink {
    fn report(&self, report: EjectionReport) -> ReportFuture {
        let body = serde_json::to_vec(&report).unwrap_or_default();
        let (authority, path, limit) = (self.authority.clone(), self.path.clone(), self.timeout);
        Box::pin(async move {
            tokio::time::timeout(limit, Self::post(authority, path, body))
                .await
                .unwrap_or_else(|_| {
                    Err(HealingError::Unreachable(
                        "healing webhook timed out".into(),
                    ))
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        let cfg = |url: &str| WebhookConfig {
            url: url.into(),
            timeout: default_timeout(),
        };
        assert!(WebhookSink::new(&cfg("http://127.0.0.1:9000/x")).is_ok());
        assert_eq!(
            WebhookSink::new(&cfg("http://h/x?y=1"))
                .map(|s| s.path)
                .ok(),
            Some("/x?y=1".into())
        );
        assert!(WebhookSink::new(&cfg("https://h/x"))
            .unwrap_err()
            .reason()
            .contains("only http"));
        assert!(WebhookSink::new(&cfg("/x")).is_err());
        assert!(WebhookSink::new(&cfg("not a url")).is_err());
    }

    #[test]
    fn answers_parse() {
        assert_eq!(
            parse_action(br#"{"action":"remove"}"#),
            HealingAction::Remove
        );
        assert_eq!(parse_action(br#"{"action":"keep"}"#), HealingAction::Keep);
        assert_eq!(parse_action(b""), HealingAction::Keep);
        assert_eq!(parse_action(b"[1,2]"), HealingAction::Keep);
    }
}
