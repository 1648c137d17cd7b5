//! Templates: `%FIELD%` placeholders parsed at load into pieces, rendered per line.

use std::{fmt::Write, time::UNIX_EPOCH};

use http::{HeaderName, HeaderValue};

use super::Record;

/// One fact of a [`Record`] a template names.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Field {
    StartTime,
    StartTimeUnix,
    Method,
    Path,
    Uri,
    Protocol,
    Status,
    BytesSent,
    Duration,
    Peer,
    PeerIp,
    Authority,
    Listener,
    Route,
    UpstreamCluster,
    ProxyError,
    RpcService,
    RpcMethod,
    /// A request header, by its index in the formatter's list.
    Req(usize),
    /// A response header, by its index in the formatter's list.
    Resp(usize),
}

impl Field {
    /// Whether a JSON value that is this field alone is written as a number.
    pub(super) fn is_numeric(self) -> bool {
        matches!(
            self,
            Self::Status | Self::BytesSent | Self::Duration | Self::StartTimeUnix
        )
    }
}

/// A piece of a template: literal text or a field.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Piece {
    Lit(String),
    Field(Field),
}

/// The headers templates name, collected while parsing.
#[derive(Debug, Default)]
pub(super) struct Headers {
    pub(super) request: Vec<HeaderName>,
    pub(super) response: Vec<HeaderName>,
}

/// Parses `template`; errors name `field` (`format.text`, `format.json.status`).
pub(super) fn parse(
    template: &str,
    field: &str,
    headers: &mut Headers,
) -> Result<Vec<Piece>, crate::ConfigError> {
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
        let f = field_of(name, headers).map_err(|reason| crate::ConfigError::new(field, reason))?;
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

fn field_of(name: &str, headers: &mut Headers) -> Result<Field, String> {
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
        "START_TIME_UNIX" => Field::StartTimeUnix,
        "METHOD" => Field::Method,
        "PATH" => Field::Path,
        "URI" => Field::Uri,
        "PROTOCOL" => Field::Protocol,
        "STATUS" => Field::Status,
        "BYTES_SENT" => Field::BytesSent,
        "DURATION" => Field::Duration,
        "PEER" => Field::Peer,
        "PEER_IP" => Field::PeerIp,
        "AUTHORITY" => Field::Authority,
        "LISTENER" => Field::Listener,
        "ROUTE" => Field::Route,
        "UPSTREAM_CLUSTER" => Field::UpstreamCluster,
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
            Field::Req(header(&n[4..n.len() - 1], &mut headers.request)?)
        }
        n if n.starts_with("RESP(") && n.ends_with(')') => {
            Field::Resp(header(&n[5..n.len() - 1], &mut headers.response)?)
        }
        n => return Err(format!("unknown field %{n}%")),
    })
}

/// Writes a numeric field as a JSON number.
pub(super) fn number(out: &mut String, f: Field, r: &Record) {
    let _ = match f {
        Field::Status => write!(out, "{}", r.status),
        Field::BytesSent => write!(out, "{}", r.bytes_sent),
        Field::StartTimeUnix => write_unix(out, r),
        _ => write!(out, "{:.3}", millis(r)),
    };
}

/// Writes field `f` of `r`; a missing value is `missing` (`-` in text, nothing in
/// JSON, which then writes `null` for an empty value).
pub(super) fn render(out: &mut impl Write, f: Field, r: &Record, missing: &str) {
    let text = |out: &mut dyn Write, v: Option<&str>| out.write_str(v.unwrap_or(missing));
    let _ = match f {
        Field::StartTime => rfc3339(out, r.start),
        Field::StartTimeUnix => write_unix(out, r),
        Field::Method => text(out, r.method.as_ref().map(http::Method::as_str)),
        Field::Path => text(
            out,
            r.uri
                .as_ref()
                .map(|u| u.path_and_query().map_or("/", |p| p.as_str())),
        ),
        Field::Uri => match &r.uri {
            Some(u) => write!(out, "{u}"),
            None => text(out, None),
        },
        Field::Protocol => write!(out, "{:?}", r.version),
        Field::Status => write!(out, "{}", r.status),
        Field::BytesSent => write!(out, "{}", r.bytes_sent),
        Field::Duration => write!(out, "{:.3}", millis(r)),
        Field::Peer => match r.peer {
            Some(p) => write!(out, "{p}"),
            None => text(out, None),
        },
        Field::PeerIp => match r.peer {
            Some(p) => write!(out, "{}", p.ip()),
            None => text(out, None),
        },
        Field::Authority => text(out, r.authority()),
        Field::Listener => text(out, r.listener.as_deref()),
        Field::Route => text(out, r.route.as_deref()),
        Field::UpstreamCluster => text(out, r.cluster.as_deref()),
        Field::ProxyError => text(out, header(r.proxy_error.as_ref())),
        Field::RpcService => text(out, r.rpc.as_ref().map(|i| &*i.service)),
        Field::RpcMethod => text(out, r.rpc.as_ref().map(|i| &*i.method)),
        Field::Req(i) => text(
            out,
            header(r.request_headers.get(i).and_then(Option::as_ref)),
        ),
        Field::Resp(i) => text(
            out,
            header(r.response_headers.get(i).and_then(Option::as_ref)),
        ),
    };
}

fn header(v: Option<&HeaderValue>) -> Option<&str> {
    v.and_then(|v| v.to_str().ok())
}

fn millis(r: &Record) -> f64 {
    r.duration.as_secs_f64() * 1000.0
}

fn write_unix(out: &mut impl Write, r: &Record) -> std::fmt::Result {
    let d = r.start.duration_since(UNIX_EPOCH).unwrap_or_default();
    write!(out, "{}.{:03}", d.as_secs(), d.subsec_millis())
}

/// Writes `t` as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(super) fn rfc3339(out: &mut impl Write, t: std::time::SystemTime) -> std::fmt::Result {
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
    write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Writes what it is given as the inside of a JSON string: `"`, `\` and control
/// characters escaped.
pub(super) struct JsonEscaped<'a>(pub(super) &'a mut String);

impl Write for JsonEscaped<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        escape_json(self.0, s);
        Ok(())
    }
}

/// Appends `s` to `out` escaped for the inside of a JSON string.
pub(super) fn escape_json(out: &mut String, s: &str) {
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f | 0x7f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
}
