//! Access log formats: templates compiled at load into pieces, rendered per line.

use std::{collections::BTreeMap, fmt::Write as _, sync::Arc, time::UNIX_EPOCH};

use http::{HeaderName, HeaderValue};
use proxy_core::HttpRequest;
use serde::{Deserialize, Serialize};

use super::Record;
use crate::ConfigError;

/// The default text line.
pub const DEFAULT_TEXT: &str = "[%START_TIME%] \"%METHOD% %PATH% %PROTOCOL%\" %STATUS% %BYTES_SENT% %DURATION% %PEER% \"%AUTHORITY%\" \"%REQ(user-agent)%\" %ROUTE% %PROXY_ERROR%";

/// A line format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum LogFormat {
    /// A text template with `%FIELD%` placeholders.
    Text(String),
    /// A JSON object per line: key to template; an empty map logs the default fields.
    Json(BTreeMap<String, String>),
}

impl Default for LogFormat {
    fn default() -> Self {
        Self::Text(DEFAULT_TEXT.to_owned())
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Field {
    StartTime,
    Method,
    Path,
    Protocol,
    Status,
    BytesSent,
    Duration,
    Peer,
    PeerIp,
    Authority,
    Route,
    ProxyError,
    RpcService,
    RpcMethod,
    Req(usize),
    Resp(usize),
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Lit(String),
    Field(Field),
}

/// A compiled format.
#[derive(Debug)]
pub(crate) struct Compiled {
    kind: Kind,
    pub(crate) req_headers: Vec<HeaderName>,
    pub(crate) resp_headers: Vec<HeaderName>,
}

#[derive(Debug)]
enum Kind {
    Text(Vec<Piece>),
    Json(Vec<(String, Vec<Piece>)>),
}

const DEFAULT_JSON: &[(&str, &str)] = &[
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

impl Compiled {
    pub(crate) fn new(format: &LogFormat) -> Result<Self, ConfigError> {
        let mut req = Vec::new();
        let mut resp = Vec::new();
        let kind = match format {
            LogFormat::Text(t) => Kind::Text(parse(t, "format.text", &mut req, &mut resp)?),
            LogFormat::Json(map) => {
                let entries: Vec<(String, String)> = if map.is_empty() {
                    DEFAULT_JSON
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect()
                } else {
                    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
                };
                let mut out = Vec::new();
                for (k, v) in entries {
                    let field = format!("format.json.{k}");
                    out.push((k, parse(&v, &field, &mut req, &mut resp)?));
                }
                Kind::Json(out)
            }
        };
        Ok(Self {
            kind,
            req_headers: req,
            resp_headers: resp,
        })
    }

    /// One line, newline included.
    pub(crate) fn line(&self, r: &Record) -> String {
        let mut out = String::with_capacity(256);
        match &self.kind {
            Kind::Text(pieces) => {
                for p in pieces {
                    match p {
                        Piece::Lit(s) => out.push_str(s),
                        Piece::Field(f) => render(&mut out, *f, r, false),
                    }
                }
            }
            Kind::Json(entries) => {
                let mut obj = serde_json::Map::with_capacity(entries.len());
                let mut buf = String::new();
                for (k, pieces) in entries {
                    let value = match pieces.as_slice() {
                        [Piece::Field(f @ (Field::Status | Field::BytesSent | Field::Duration))] => {
                            numeric(*f, r)
                        }
                        _ => {
                            buf.clear();
                            for p in pieces {
                                match p {
                                    Piece::Lit(s) => buf.push_str(s),
                                    Piece::Field(f) => render(&mut buf, *f, r, true),
                                }
                            }
                            if buf.is_empty() {
                                serde_json::Value::Null
                            } else {
                                serde_json::Value::String(buf.clone())
                            }
                        }
                    };
                    obj.insert(k.clone(), value);
                }
                out = serde_json::Value::Object(obj).to_string();
            }
        }
        out.push('\n');
        out
    }
}

fn parse(
    template: &str,
    field: &str,
    req: &mut Vec<HeaderName>,
    resp: &mut Vec<HeaderName>,
) -> Result<Vec<Piece>, ConfigError> {
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut rest = template;
    while let Some(i) = rest.find('%') {
        lit.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(j) = after.find('%') else {
            lit.push('%');
            rest = after;
            continue;
        };
        let name = &after[..j];
        if name.is_empty() {
            // "%%" is a literal percent sign.
            lit.push('%');
            rest = &after[1..];
            continue;
        }
        let f = field_of(name, req, resp)
            .map_err(|reason| ConfigError::invalid(field.to_owned(), reason))?;
        if !lit.is_empty() {
            pieces.push(Piece::Lit(std::mem::take(&mut lit)));
        }
        pieces.push(Piece::Field(f));
        rest = &after[j + 1..];
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        pieces.push(Piece::Lit(lit));
    }
    Ok(pieces)
}

fn field_of(
    name: &str,
    req: &mut Vec<HeaderName>,
    resp: &mut Vec<HeaderName>,
) -> Result<Field, String> {
    let header = |inner: &str, list: &mut Vec<HeaderName>| -> Result<usize, String> {
        let h = HeaderName::from_bytes(inner.trim().as_bytes())
            .map_err(|_| format!("{inner:?} is not a valid header name"))?;
        Ok(match list.iter().position(|x| *x == h) {
            Some(i) => i,
            None => {
                list.push(h);
                list.len() - 1
            }
        })
    };
    Ok(match name {
        "START_TIME" => Field::StartTime,
        "METHOD" => Field::Method,
        "PATH" => Field::Path,
        "PROTOCOL" => Field::Protocol,
        "STATUS" => Field::Status,
        "BYTES_SENT" => Field::BytesSent,
        "DURATION" => Field::Duration,
        "PEER" => Field::Peer,
        "PEER_IP" => Field::PeerIp,
        "AUTHORITY" => Field::Authority,
        "ROUTE" => Field::Route,
        "PROXY_ERROR" => Field::ProxyError,
        "RPC_SERVICE" => Field::RpcService,
        "RPC_METHOD" => Field::RpcMethod,
        // Envoy's names for the same facts.
        "RESPONSE_CODE" => Field::Status,
        "DOWNSTREAM_REMOTE_ADDRESS" => Field::Peer,
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => Field::PeerIp,
        "ROUTE_NAME" => Field::Route,
        "REQ(:METHOD)" => Field::Method,
        "REQ(:PATH)" => Field::Path,
        "REQ(:AUTHORITY)" => Field::Authority,
        n if n.starts_with("REQ(") && n.ends_with(')') => {
            Field::Req(header(&n[4..n.len() - 1], req)?)
        }
        n if n.starts_with("RESP(") && n.ends_with(')') => {
            Field::Resp(header(&n[5..n.len() - 1], resp)?)
        }
        n => return Err(format!("unknown field %{n}%")),
    })
}

fn numeric(f: Field, r: &Record) -> serde_json::Value {
    match f {
        Field::Status => r.status.into(),
        Field::BytesSent => r.bytes_sent.into(),
        _ => serde_json::Number::from_f64(r.start.elapsed().as_secs_f64() * 1000.0)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
    }
}

fn render(out: &mut String, f: Field, r: &Record, json: bool) {
    let dash = if json { "" } else { "-" };
    let header = |out: &mut String, v: Option<&HeaderValue>| match v.and_then(|v| v.to_str().ok()) {
        Some(s) => out.push_str(s),
        None => out.push_str(dash),
    };
    let _ = match f {
        Field::StartTime => {
            rfc3339(out, r.start_wall);
            Ok(())
        }
        Field::Method => write!(out, "{}", r.method),
        Field::Path => write!(
            out,
            "{}",
            r.uri.path_and_query().map_or("/", |p| p.as_str())
        ),
        Field::Protocol => write!(out, "{:?}", r.version),
        Field::Status => write!(out, "{}", r.status),
        Field::BytesSent => write!(out, "{}", r.bytes_sent),
        Field::Duration => write!(out, "{:.3}", r.start.elapsed().as_secs_f64() * 1000.0),
        Field::Peer => match r.peer {
            Some(p) => write!(out, "{p}"),
            None => write!(out, "{dash}"),
        },
        Field::PeerIp => match r.peer {
            Some(p) => write!(out, "{}", p.ip()),
            None => write!(out, "{dash}"),
        },
        Field::Authority => {
            header(out, r.authority.as_ref());
            Ok(())
        }
        Field::Route => write!(out, "{}", r.route.as_deref().unwrap_or(dash)),
        Field::ProxyError => {
            header(out, r.proxy_error.as_ref());
            Ok(())
        }
        Field::RpcService => write!(out, "{}", r.rpc.as_ref().map_or(dash, |(s, _)| s)),
        Field::RpcMethod => write!(out, "{}", r.rpc.as_ref().map_or(dash, |(_, m)| m)),
        Field::Req(i) => {
            header(out, r.req_headers.get(i).and_then(Option::as_ref));
            Ok(())
        }
        Field::Resp(i) => {
            header(out, r.resp_headers.get(i).and_then(Option::as_ref));
            Ok(())
        }
    };
}

/// The RPC service and method the codec put on the request, if any.
pub(crate) fn rpc_of(req: &HttpRequest) -> Option<(Arc<str>, Arc<str>)> {
    req.extensions()
        .get::<proxy_core::rpc::RpcInfo>()
        .map(|r| (r.service.clone(), r.method.clone()))
}

/// Writes `t` as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) fn rfc3339(out: &mut String, t: std::time::SystemTime) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil from days (Howard Hinnant's algorithm), days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { y + 1 } else { y };
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_millis()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        let mut s = String::new();
        rfc3339(
            &mut s,
            UNIX_EPOCH + std::time::Duration::from_millis(951_782_400_123),
        );
        assert_eq!(s, "2000-02-29T00:00:00.123Z");
        s.clear();
        rfc3339(&mut s, UNIX_EPOCH);
        assert_eq!(s, "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn templates() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let p = parse("%METHOD% 100%% %REQ(x-a)%", "f", &mut a, &mut b).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(a.len(), 1);
        assert!(parse("%NOPE%", "format.text", &mut a, &mut b)
            .unwrap_err()
            .to_string()
            .contains("format.text: unknown field %NOPE%"));
        assert!(parse("%REQ(bad name)%", "f", &mut a, &mut b).is_err());
        let envoy = parse("%REQ(:METHOD)% %RESPONSE_CODE%", "f", &mut a, &mut b).unwrap();
        assert_eq!(envoy[0], Piece::Field(Field::Method));
        assert_eq!(envoy[2], Piece::Field(Field::Status));
        let lone = parse("50% done", "f", &mut a, &mut b).unwrap();
        assert_eq!(lone, vec![Piece::Lit("50% done".into())]);
    }
}
