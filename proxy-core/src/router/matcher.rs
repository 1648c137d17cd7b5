//! Method and header conditions of a route, and size-limited regex compilation.

use http::{HeaderMap, Method};

use crate::{config::RouteMatchConfig, matcher::HeaderMatch, ConfigError};

/// Compiles `pattern` under the one regex rule ([`crate::matcher`]).
pub(super) fn whole_str_regex(field: &str, pattern: &str) -> Result<regex::Regex, ConfigError> {
    crate::matcher::compile_whole(pattern).map_err(|why| ConfigError::new(field, why))
}

pub(super) use crate::matcher::REGEX_SIZE_LIMIT;

/// The method and header conditions of one route.
#[derive(Debug)]
pub(super) struct Conditions {
    /// Allowed methods; any when empty.
    methods: Box<[Method]>,
    /// All must hold.
    headers: Box<[HeaderMatch]>,
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
        let headers = cfg.headers.clone().into_boxed_slice();
        Ok(Self { methods, headers })
    }

    /// Whether the method and every header condition hold; a condition on `host` sees
    /// `authority` when there is one ([`HeaderMatch::matches_request`]).
    #[inline]
    pub(super) fn matches(
        &self,
        method: &Method,
        authority: Option<&str>,
        headers: &HeaderMap,
    ) -> bool {
        (self.methods.is_empty() || self.methods.contains(method))
            && self
                .headers
                .iter()
                .all(|h| h.matches_request(headers, authority))
    }

    /// Whether a header condition is on the request's authority.
    pub(super) fn reads_host(&self) -> bool {
        self.headers.iter().any(HeaderMatch::is_on_host)
    }
}
