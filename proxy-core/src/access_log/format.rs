//! Line formats: the config shape ([`LogFormat`]) and its compiled form
//! ([`Formatter`]), which renders a [`Record`] into a caller's buffer.

use std::{collections::BTreeMap, fmt};

use http::HeaderName;
use serde::{
    de::{self, MapAccess, Visitor},
    ser::SerializeMap,
    Deserialize, Deserializer, Serialize, Serializer,
};

use super::{
    template::{self, Headers, JsonEscaped, Piece},
    Record,
};
use crate::ConfigError;

/// A line format: a snake_case string for the default of where the log is attached,
/// or a one-key map.
///
/// | written as | means |
/// |---|---|
/// | `text` | the default text line ([`Defaults::text`]) |
/// | `json` | a JSON object of the default fields ([`Defaults::json`]) |
/// | `{text: "%METHOD% %PATH% %STATUS%"}` | a text template with `%FIELD%` placeholders |
/// | `{json: {status: "%STATUS%", ua: "%REQ(user-agent)%"}}` | a JSON object per line, key to template |
///
/// An empty template or map means the default, as the strings do.
///
/// # Example
/// ```
/// use proxy_core::access_log::LogFormat;
/// let f: LogFormat = proxy_core::config::from_yaml("{text: '%METHOD% %STATUS%'}").unwrap();
/// assert_eq!(f, LogFormat::Text("%METHOD% %STATUS%".into()));
/// let f: LogFormat = proxy_core::config::from_yaml("json").unwrap();
/// assert_eq!(f, LogFormat::json());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum LogFormat {
    /// A text template with `%FIELD%` placeholders; empty: the default line.
    Text(String),
    /// A JSON object per line, key to template; empty: the default fields.
    Json(BTreeMap<String, String>),
}

impl LogFormat {
    /// `text`: the default text line.
    pub fn text() -> Self {
        Self::Text(String::new())
    }

    /// `json`: the default JSON fields.
    pub fn json() -> Self {
        Self::Json(BTreeMap::new())
    }
}

/// `text`: the default text line.
impl Default for LogFormat {
    fn default() -> Self {
        Self::text()
    }
}

const VARIANTS: &[&str] = &["text", "json"];

impl Serialize for LogFormat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Text(t) if t.is_empty() => s.serialize_str("text"),
            Self::Json(m) if m.is_empty() => s.serialize_str("json"),
            Self::Text(t) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("text", t)?;
                m.end()
            }
            Self::Json(fields) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("json", fields)?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for LogFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FormatVisitor;

        impl<'de> Visitor<'de> for FormatVisitor {
            type Value = LogFormat;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`text`, `json`, {text: TEMPLATE} or {json: {KEY: TEMPLATE}}")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<LogFormat, E> {
                match v {
                    "text" => Ok(LogFormat::text()),
                    "json" => Ok(LogFormat::json()),
                    other => Err(E::unknown_variant(other, VARIANTS)),
                }
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LogFormat, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::invalid_length(0, &self));
                };
                let format = match key.as_str() {
                    "text" => LogFormat::Text(map.next_value()?),
                    "json" => LogFormat::Json(
                        map.next_value::<Option<BTreeMap<String, String>>>()?
                            .unwrap_or_default(),
                    ),
                    other => return Err(de::Error::unknown_variant(other, VARIANTS)),
                };
                if map.next_key::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom("expected one key, `text` or `json`"));
                }
                Ok(format)
            }
        }

        d.deserialize_any(FormatVisitor)
    }
}

/// What `text` and `json` (or an empty template or map) mean where a log is attached.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    /// The default text template.
    pub text: &'static str,
    /// The default JSON fields: key and template, in line order.
    pub json: &'static [(&'static str, &'static str)],
}

/// A format compiled at load: renders a [`Record`] into a caller's buffer, with no
/// allocation of its own.
#[derive(Debug)]
pub struct Formatter {
    kind: Kind,
    headers: Headers,
}

#[derive(Debug)]
enum Kind {
    Text(Vec<Piece>),
    /// `"key":` (escaped) and the value's pieces, literals escaped.
    Json(Vec<(String, Vec<Piece>)>),
}

impl Formatter {
    /// Compiles `format`, `defaults` standing for `text`, `json` and empty ones.
    ///
    /// # Errors
    /// An unknown `%FIELD%` or a bad header name in `%REQ()%`/`%RESP()%`, naming the
    /// field (`format.text`, `format.json.KEY`).
    pub fn new(format: &LogFormat, defaults: &Defaults) -> Result<Self, ConfigError> {
        let mut headers = Headers::default();
        let kind = match format {
            LogFormat::Text(t) => {
                let t = if t.is_empty() { defaults.text } else { t };
                Kind::Text(template::parse(t, "format.text", &mut headers)?)
            }
            LogFormat::Json(map) => {
                let entries: Vec<(&str, &str)> = if map.is_empty() {
                    defaults.json.to_vec()
                } else {
                    map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
                };
                let mut out = Vec::with_capacity(entries.len());
                for (k, v) in entries {
                    let field = crate::config::join_path("format.json", k);
                    let pieces = template::parse(v, &field, &mut headers)?
                        .into_iter()
                        .map(|p| match p {
                            Piece::Lit(s) => {
                                let mut e = String::with_capacity(s.len());
                                template::escape_json(&mut e, &s);
                                Piece::Lit(e)
                            }
                            f => f,
                        })
                        .collect();
                    let mut key = String::with_capacity(k.len() + 3);
                    key.push('"');
                    template::escape_json(&mut key, k);
                    key.push_str("\":");
                    out.push((key, pieces));
                }
                Kind::Json(out)
            }
        };
        Ok(Self { kind, headers })
    }

    /// The request headers the format names (`%REQ(name)%`), in the order a
    /// [`Record`]'s `request_headers` holds their values.
    pub fn request_headers(&self) -> &[HeaderName] {
        &self.headers.request
    }

    /// The response headers the format names (`%RESP(name)%`), in the order a
    /// [`Record`]'s `response_headers` holds their values.
    pub fn response_headers(&self) -> &[HeaderName] {
        &self.headers.response
    }

    /// Appends one line, newline included, to `out`.
    pub fn format(&self, r: &Record, out: &mut String) {
        match &self.kind {
            Kind::Text(pieces) => {
                for p in pieces {
                    match p {
                        Piece::Lit(s) => out.push_str(s),
                        Piece::Field(f) => template::render(out, *f, r, "-"),
                    }
                }
            }
            Kind::Json(entries) => {
                out.push('{');
                for (i, (key, pieces)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(key);
                    if let [Piece::Field(f)] = pieces.as_slice() {
                        if f.is_numeric() {
                            template::number(out, *f, r);
                            continue;
                        }
                    }
                    let open = out.len();
                    out.push('"');
                    for p in pieces {
                        match p {
                            Piece::Lit(s) => out.push_str(s),
                            Piece::Field(f) => template::render(&mut JsonEscaped(out), *f, r, ""),
                        }
                    }
                    if out.len() == open + 1 {
                        // Nothing known: null rather than "".
                        out.truncate(open);
                        out.push_str("null");
                    } else {
                        out.push('"');
                    }
                }
                out.push('}');
            }
        }
        out.push('\n');
    }
}
