//! The one set of matchers every crate uses: strings (exact, prefix, suffix,
//! contains, regex) and headers, with one regex rule. Routes, RBAC, traffic
//! steering, zone rules and every other condition in the config are written with
//! these, so a pattern means the same thing wherever it appears.
//!
//! The regex rule: a pattern must match the **whole** value (it is compiled as
//! `^(?:pattern)$`, after being compiled alone so that `a)|(b` cannot escape the
//! anchors), and its compiled program is bounded (1 MiB), so a hostile pattern is
//! refused at load. Everything is checked when the config deserializes.
//!
//! ```
//! use proxy_core::matcher::{HeaderMatch, StringMatch};
//!
//! let m: StringMatch = proxy_core::config::from_yaml("regex: 'v[0-9]+'").unwrap();
//! assert!(m.matches("v12"));
//! assert!(!m.matches("v12-beta"), "anchored");
//!
//! let h: HeaderMatch = proxy_core::config::from_yaml("{name: x-env, value: {exact: prod}}").unwrap();
//! let mut headers = http::HeaderMap::new();
//! headers.insert("x-env", "prod".parse().unwrap());
//! assert!(h.matches(&headers));
//! ```

use std::{fmt, str::FromStr};

use http::{HeaderMap, HeaderName};
use serde::{Deserialize, Serialize};

/// The compiled-program size limit of one config regex: a hostile pattern such as
/// `(a{1000}){1000}` is refused at load instead of eating memory and CPU.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// How a string value is matched: a one-key map, `{exact: "/x"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StringMatch {
    /// The whole value equals this.
    Exact(String),
    /// The value starts with this.
    Prefix(String),
    /// The value ends with this.
    Suffix(String),
    /// The value contains this.
    Contains(String),
    /// The whole value matches this regular expression.
    Regex(Pattern),
}

impl StringMatch {
    /// Whether `value` matches.
    #[inline]
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Self::Exact(s) => value == s,
            Self::Prefix(s) => value.starts_with(s.as_str()),
            Self::Suffix(s) => value.ends_with(s.as_str()),
            Self::Contains(s) => value.contains(s.as_str()),
            Self::Regex(p) => p.is_full_match(value),
        }
    }
}

/// A regular expression, compiled at load; it must match the whole value.
#[derive(Clone)]
pub struct Pattern {
    source: String,
    regex: regex::Regex,
}

impl Pattern {
    /// Whether the whole of `value` matches.
    #[inline]
    pub fn is_full_match(&self, value: &str) -> bool {
        self.regex.is_match(value)
    }

    /// The compiled expression, anchored at both ends.
    pub fn regex(&self) -> &regex::Regex {
        &self.regex
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// Compiles `pattern` under the one regex rule (whole value, bounded size).
///
/// # Errors
/// Why the pattern is refused, naming it.
pub fn compile_whole(pattern: &str) -> Result<regex::Regex, String> {
    let build = |p: &str| {
        regex::RegexBuilder::new(p)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
    };
    // The pattern is compiled alone first: `a)|(b` is invalid, yet would make a valid
    // but unanchored `^(?:a)|(b)$` once wrapped.
    build(pattern)
        .and_then(|_| build(&format!("^(?:{pattern})$")))
        .map_err(|e| {
            let why = match e {
                regex::Error::CompiledTooBig(limit) => {
                    format!("compiled program exceeds the size limit of {limit} bytes")
                }
                other => other.to_string(),
            };
            format!("{pattern:?} is not a valid regex: {why}")
        })
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.source)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl FromStr for Pattern {
    type Err = String;

    fn from_str(source: &str) -> Result<Self, String> {
        Ok(Self {
            regex: compile_whole(source)?,
            source: source.to_owned(),
        })
    }
}

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A header name, checked at load. `:authority` is read as `host`: a request names its
/// authority in one or the other, and a condition on `host` sees either
/// ([`HeaderMatch::matches_request`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header(pub HeaderName);

impl FromStr for Header {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case(":authority") {
            return Ok(Self(http::header::HOST));
        }
        HeaderName::from_bytes(s.as_bytes())
            .map(Self)
            .map_err(|_| format!("{s:?} is not a valid header name"))
    }
}

impl Serialize for Header {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for Header {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Matches one request header: `{name: x-user, value: {exact: admin}}`. Without
/// `value` the header only has to be present; `invert: true` flips the result (so
/// `{name: x-debug, invert: true}` means "absent"). With several values under the
/// name, any may match; a value that is not visible ASCII matches no string.
///
/// A condition on `host` (or `:authority`, the same) is a condition on the authority
/// the request names: over HTTP/2 and HTTP/3 that is `:authority`, which carries no
/// `Host` field. Give it with [`HeaderMatch::matches_request`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    /// The header name.
    pub name: Header,
    /// How its value must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<StringMatch>,
    /// Match when the header does not match.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub invert: bool,
}

impl HeaderMatch {
    /// A condition that `name` is present with a value matching `value`.
    pub fn new(name: HeaderName, value: StringMatch) -> Self {
        Self {
            name: Header(name),
            value: Some(value),
            invert: false,
        }
    }

    /// Whether `headers` match.
    #[inline]
    pub fn matches(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(&self.name.0).iter();
        let hit = match &self.value {
            None => values.next().is_some(),
            Some(m) => values.any(|v| v.to_str().is_ok_and(|v| m.matches(v))),
        };
        hit != self.invert
    }

    /// Whether a request with `headers` matches, where `authority` is the authority
    /// its target names (the URI's: HTTP/2's and HTTP/3's `:authority`, or an
    /// HTTP/1.1 absolute-form target's), if any. A condition on `host` is held
    /// against `authority` when there is one, as it replaces any `Host` field
    /// (RFC 9112 3.2.2, RFC 9113 8.3.1), and against the `Host` field otherwise.
    /// Every other condition reads `headers`, as [`HeaderMatch::matches`].
    ///
    /// ```
    /// use proxy_core::matcher::HeaderMatch;
    ///
    /// let h: HeaderMatch =
    ///     proxy_core::config::from_yaml("{name: host, value: {exact: api.example.com}}").unwrap();
    /// let no_host = http::HeaderMap::new();
    /// assert!(h.matches_request(&no_host, Some("api.example.com")), "HTTP/2's :authority");
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert(http::header::HOST, "api.example.com".parse().unwrap());
    /// assert!(h.matches_request(&headers, None), "HTTP/1.1's Host");
    /// assert!(!h.matches_request(&headers, Some("other.example.com")), "the target's wins");
    /// ```
    #[inline]
    pub fn matches_request(&self, headers: &HeaderMap, authority: Option<&str>) -> bool {
        match authority {
            Some(authority) if self.name.0 == http::header::HOST => {
                let hit = self.value.as_ref().is_none_or(|m| m.matches(authority));
                hit != self.invert
            }
            _ => self.matches(headers),
        }
    }

    /// Whether this is a condition on the request's authority (`host`).
    pub fn is_on_host(&self) -> bool {
        self.name.0 == http::header::HOST
    }
}

/// Matches the RPC service and method of a request (from [`crate::rpc::RpcInfo`],
/// set by the protocol codecs): `{service: {exact: com.shop.Orders}, method:
/// {prefix: get}}`. Give a service, a method or both (an empty `{}` is refused at
/// load); a request that is not an RPC matches neither. Used by RBAC, traffic
/// steering and every other RPC condition.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RpcMatch {
    /// How the service (interface) name must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<StringMatch>,
    /// How the method name must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
}

impl RpcMatch {
    /// Whether an RPC with `service` and `method` matches.
    #[inline]
    pub fn matches(&self, service: &str, method: &str) -> bool {
        self.service.as_ref().is_none_or(|m| m.matches(service))
            && self.method.as_ref().is_none_or(|m| m.matches(method))
    }
}

impl<'de> Deserialize<'de> for RpcMatch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Repr {
            #[serde(default)]
            service: Option<StringMatch>,
            #[serde(default)]
            method: Option<StringMatch>,
        }
        let r = Repr::deserialize(d)?;
        if r.service.is_none() && r.method.is_none() {
            return Err(serde::de::Error::custom("give a service, a method or both"));
        }
        Ok(Self {
            service: r.service,
            method: r.method,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_regex_rule() {
        let p: Pattern = "a+b".parse().unwrap();
        assert!(p.is_full_match("aab"));
        assert!(!p.is_full_match("aabc"));
        assert!(
            "a)|(b".parse::<Pattern>().is_err(),
            "cannot escape the anchors"
        );
        assert!("(a{1000}){1000}".parse::<Pattern>().is_err(), "bounded");
        assert!("(".parse::<Pattern>().is_err());
    }

    #[test]
    fn rpc() {
        let m: RpcMatch =
            crate::config::from_yaml("{service: {exact: a.B}, method: {prefix: get}}").unwrap();
        assert!(m.matches("a.B", "getX"));
        assert!(!m.matches("a.B", "put"));
        assert!(crate::config::from_yaml::<RpcMatch>("{}").is_err());
    }

    #[test]
    fn headers() {
        let h: HeaderMatch = crate::config::from_yaml("{name: x-a, value: {prefix: v}}").unwrap();
        let mut headers = HeaderMap::new();
        assert!(!h.matches(&headers));
        headers.append("x-a", "other".parse().unwrap());
        headers.append("x-a", "value".parse().unwrap());
        assert!(h.matches(&headers));
        let absent: HeaderMatch = crate::config::from_yaml("{name: x-b, invert: true}").unwrap();
        assert!(absent.matches(&headers));
        let e = crate::config::from_yaml::<HeaderMatch>("{name: 'bad name'}").unwrap_err();
        assert_eq!(e.path, "name", "{e}");
        let e = crate::config::from_yaml::<HeaderMatch>("{name: ':path'}").unwrap_err();
        assert_eq!(e.path, "name", "{e}");
        let e =
            crate::config::from_yaml::<HeaderMatch>("{name: x, value: {regex: '('}}").unwrap_err();
        assert!(e.path.starts_with("value"), "{e}");
    }

    #[test]
    fn a_condition_on_host_sees_the_authority_the_request_names() {
        let exact: HeaderMatch =
            crate::config::from_yaml("{name: ':authority', value: {suffix: .example.com}}")
                .unwrap();
        assert!(exact.is_on_host(), "`:authority` is `host`");
        let mut headers = HeaderMap::new();
        assert!(!exact.matches_request(&headers, None));
        assert!(exact.matches_request(&headers, Some("api.example.com")));
        headers.insert(http::header::HOST, "api.example.com".parse().unwrap());
        assert!(exact.matches_request(&headers, None), "the Host field");
        assert!(
            !exact.matches_request(&headers, Some("api.example.org")),
            "the target's authority replaces Host"
        );
        let absent: HeaderMatch = crate::config::from_yaml("{name: host, invert: true}").unwrap();
        assert!(!absent.matches_request(&HeaderMap::new(), Some("a")));
        assert!(absent.matches_request(&HeaderMap::new(), None));
        let other: HeaderMatch = crate::config::from_yaml("{name: x-a}").unwrap();
        assert!(!other.is_on_host());
        assert!(
            !other.matches_request(&headers, Some("x-a")),
            "reads its own field"
        );
    }
}
