//! Method and header conditions of a route, and size-limited regex compilation.

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::{
    config::{HeaderMatchConfig, HeaderValueMatchConfig, RouteMatchConfig},
    ConfigError,
};

/// The compiled-program size limit of one config regex: a hostile pattern such as
/// `(a{1000}){1000}` is refused at load instead of eating memory and CPU.
pub(super) const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Compiles `pattern` so that it must match a whole `&str` (`^(?:pattern)$`).
pub(super) fn whole_str_regex(field: &str, pattern: &str) -> Result<regex::Regex, ConfigError> {
    let build = |p: &str| {
        regex::RegexBuilder::new(p)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
    };
    // The pattern is compiled alone first: `a)|(b` is invalid, yet would make a valid
    // but unanchored `^(?:a)|(b)$` once wrapped.
    build(pattern)
        .and_then(|_| build(&format!("^(?:{pattern})$")))
        .map_err(|e| regex_error(field, pattern, e))
}

/// Compiles `pattern` so that it must match a whole header value.
fn whole_bytes_regex(field: &str, pattern: &str) -> Result<regex::bytes::Regex, ConfigError> {
    let build = |p: &str| {
        regex::bytes::RegexBuilder::new(p)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
    };
    build(pattern)
        .and_then(|_| build(&format!("^(?:{pattern})$")))
        .map_err(|e| regex_error(field, pattern, e))
}

fn regex_error(field: &str, pattern: &str, e: regex::Error) -> ConfigError {
    let why = match e {
        regex::Error::CompiledTooBig(limit) => {
            format!("compiled program exceeds the size limit of {limit} bytes")
        }
        other => other.to_string(),
    };
    ConfigError::new(
        field,
        format_args!("{pattern:?} is not a valid regex: {why}"),
    )
}

/// The method and header conditions of one route.
#[derive(Debug)]
pub(super) struct Conditions {
    /// Allowed methods; any when empty.
    methods: Box<[Method]>,
    /// All must hold.
    headers: Box<[HeaderMatcher]>,
}

impl Conditions {
    /// Validates the method and header parts of a route's match; `field` is the path of
    /// the `match` object.
    pub(super) fn build(field: &str, cfg: &RouteMatchConfig) -> Result<Self, ConfigError> {
        let methods = cfg
            .methods
            .iter()
            .enumerate()
            .map(|(i, m)| {
                Method::from_bytes(m.as_bytes()).map_err(|_| {
                    ConfigError::new(
                        format!("{field}.methods[{i}]"),
                        format_args!("{m:?} is not a valid method"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let headers = cfg
            .headers
            .iter()
            .enumerate()
            .map(|(i, h)| HeaderMatcher::build(&format!("{field}.headers[{i}]"), h))
            .collect::<Result<_, _>>()?;
        Ok(Self { methods, headers })
    }

    /// Whether the method and every header condition hold.
    #[inline]
    pub(super) fn matches(&self, method: &Method, headers: &HeaderMap) -> bool {
        (self.methods.is_empty() || self.methods.contains(method))
            && self.headers.iter().all(|h| h.matches(headers))
    }
}

/// One header condition.
#[derive(Debug)]
struct HeaderMatcher {
    name: HeaderName,
    value: ValueMatch,
    invert: bool,
}

#[derive(Debug)]
enum ValueMatch {
    Exact(Box<[u8]>),
    Prefix(Box<[u8]>),
    Regex(regex::bytes::Regex),
    Present(bool),
}

impl HeaderMatcher {
    fn build(field: &str, cfg: &HeaderMatchConfig) -> Result<Self, ConfigError> {
        let name = HeaderName::from_bytes(cfg.name.as_bytes()).map_err(|_| {
            ConfigError::new(
                format!("{field}.name"),
                format_args!("{:?} is not a valid header name", cfg.name),
            )
        })?;
        let literal = |kind: &str, v: &str| {
            HeaderValue::from_bytes(v.as_bytes())
                .map(|_| v.as_bytes().into())
                .map_err(|_| {
                    ConfigError::new(
                        format!("{field}.{kind}"),
                        format_args!("{v:?} is not a valid header value"),
                    )
                })
        };
        let value = match &cfg.value {
            HeaderValueMatchConfig::Exact(v) => ValueMatch::Exact(literal("exact", v)?),
            HeaderValueMatchConfig::Prefix(v) => ValueMatch::Prefix(literal("prefix", v)?),
            HeaderValueMatchConfig::Regex(p) => {
                ValueMatch::Regex(whole_bytes_regex(&format!("{field}.regex"), p)?)
            }
            HeaderValueMatchConfig::Present(p) => ValueMatch::Present(*p),
        };
        Ok(Self {
            name,
            value,
            invert: cfg.invert,
        })
    }

    /// With several values under the name, a value condition holds when any value
    /// satisfies it; `invert` negates the result.
    fn matches(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(&self.name).iter();
        let hit = match &self.value {
            ValueMatch::Present(present) => headers.contains_key(&self.name) == *present,
            ValueMatch::Exact(want) => values.any(|v| v.as_bytes() == &**want),
            ValueMatch::Prefix(want) => values.any(|v| v.as_bytes().starts_with(want)),
            ValueMatch::Regex(re) => values.any(|v| re.is_match(v.as_bytes())),
        };
        hit != self.invert
    }
}
