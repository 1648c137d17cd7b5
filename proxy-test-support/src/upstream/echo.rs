//! The JSON echo upstream and the parser of what it answers.

use std::time::Duration;

use http::{Response, StatusCode};

use super::{full, RespBody, Seen, Upstream};

impl Upstream {
    /// Answers every request with JSON describing it: `upstream` (`name`), `method`,
    /// `uri`, `version`, `headers` (`[[name, value], ...]`), `body`, `body_len`
    /// (read back with [`Echoed::parse`]). Request header `x-echo-status: N` sets the
    /// status, `x-echo-delay-ms: N` delays the answer. Responses carry
    /// `x-upstream: NAME` and `x-upstream-internal: 1`. Serves HTTP/1.1 and h2c.
    pub fn echo(name: &str) -> Self {
        let name: std::sync::Arc<str> = name.into();
        Self::http_async(move |seen| echo(name.clone(), seen))
    }
}

async fn echo(name: std::sync::Arc<str>, seen: Seen) -> Response<RespBody> {
    if let Some(ms) = seen.header("x-echo-delay-ms").and_then(|v| v.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = seen
        .header("x-echo-status")
        .and_then(|v| v.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let headers: Vec<serde_json::Value> = seen
        .headers
        .iter()
        .map(|(n, v)| serde_json::json!([n.as_str(), String::from_utf8_lossy(v.as_bytes())]))
        .collect();
    let json = serde_json::json!({
        "upstream": &*name,
        "method": seen.method.as_str(),
        "uri": seen.uri.to_string(),
        "version": format!("{:?}", seen.version),
        "headers": headers,
        "body": String::from_utf8_lossy(&seen.body),
        "body_len": seen.body.len(),
    });
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-upstream", &*name)
        .header("x-upstream-internal", "1")
        .body(full(json.to_string()))
        .expect("echo response")
}

/// What the echo upstream ([`Upstream::echo`]) saw, read from its answer.
#[derive(Debug, Clone)]
pub struct Echoed {
    /// The upstream's name.
    pub upstream: String,
    /// The method.
    pub method: String,
    /// The request target.
    pub uri: String,
    /// The version, as `HTTP/1.1`, `HTTP/2.0`.
    pub version: String,
    /// The headers in order, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The body, as text.
    pub body: String,
}

impl Echoed {
    /// Parses the echo's JSON.
    ///
    /// # Panics
    /// When `body` is not the echo's JSON.
    pub fn parse(body: &[u8]) -> Self {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_else(|e| {
            panic!(
                "echo body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(body)
            )
        });
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        let headers = v["headers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| {
                        (
                            p[0].as_str().unwrap_or_default().to_owned(),
                            p[1].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            upstream: s("upstream"),
            method: s("method"),
            uri: s("uri"),
            version: s("version"),
            headers,
            body: s("body"),
        }
    }

    /// All values of a header (name case-insensitive).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        crate::client::raw::field_values(&self.headers, name)
    }

    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).into_iter().next()
    }
}
