//! A route's actions: the cluster, timeouts, retries, rewrites and header mutations.

use std::{str::FromStr, sync::Arc, time::Duration};

use http::{uri::Authority, uri::PathAndQuery, HeaderMap, HeaderName, HeaderValue};

use super::path_index::PathMatch;
use crate::{
    config::{HeaderValueConfig, RetryOn, RetryPolicyConfig, RouteConfig},
    metrics::RequestStats,
    ConfigError,
};

/// Maximum `retry.attempts`.
const MAX_RETRY_ATTEMPTS: u32 = 10;

/// A validated route: where matching requests go and what changes on the way.
///
/// Built by [`RouteTable::build`](super::RouteTable::build); shared as `Arc<Route>`.
#[derive(Debug)]
pub struct Route {
    /// The config name, or `<vhost name>/<index>` when the config gives none; used as
    /// the metrics label.
    pub name: Arc<str>,
    /// The name of the virtual host the route belongs to.
    pub vhost: Arc<str>,
    /// The cluster that serves matching requests; known to exist.
    pub cluster: Arc<str>,
    /// Whole-request timeout including retries.
    pub timeout: Option<Duration>,
    /// The retry policy; no retries when absent.
    pub retry: Option<RetryPolicy>,
    /// The Host / `:authority` to send upstream instead of the downstream one.
    pub host_rewrite: Option<HeaderValue>,
    /// Changes to the request headers sent upstream.
    pub request_headers: HeaderMutations,
    /// Changes to the response headers sent downstream.
    pub response_headers: HeaderMutations,
    /// The route's request counters.
    pub stats: Arc<RequestStats>,
    rewrite: Option<PrefixRewrite>,
    /// The route's own filters (`routes[].filters`), wrapped around the forwarding.
    pub(crate) filters: std::sync::OnceLock<RouteFilters>,
    /// With `filter_overrides` that change the listener's filters: which of the
    /// listener's route-specific filter stacks serves this route.
    pub(crate) listener_stack: std::sync::OnceLock<usize>,
}

/// A route's filter stack, ending in the forwarding of the request.
#[derive(Clone)]
pub(crate) struct RouteFilters(pub(crate) crate::BoxHttp);

impl std::fmt::Debug for RouteFilters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RouteFilters")
    }
}

/// The matched prefix and its replacement.
#[derive(Debug)]
struct PrefixRewrite {
    prefix: Box<str>,
    replacement: Box<str>,
}

impl Route {
    /// Validates the action part of `cfg`, the route number `index` of virtual host
    /// `vhost`; `field` is the route's config path, `path` its validated path match.
    pub(super) fn build(
        field: &str,
        vhost: &Arc<str>,
        index: usize,
        cfg: &RouteConfig,
        path: &PathMatch,
        cluster_exists: &dyn Fn(&str) -> bool,
    ) -> Result<Self, ConfigError> {
        if !cluster_exists(&cfg.cluster) {
            return Err(ConfigError::new(
                format!("{field}.cluster"),
                format_args!("unknown cluster {:?}", cfg.cluster),
            ));
        }
        let retry = cfg
            .retry
            .as_ref()
            .map(|r| RetryPolicy::build(&format!("{field}.retry"), r))
            .transpose()?;
        let rewrite = match (&cfg.prefix_rewrite, path) {
            (None, _) => None,
            (Some(replacement), PathMatch::Prefix(prefix)) => {
                let valid = replacement.starts_with('/')
                    && !replacement.contains(['?', '#'])
                    && PathAndQuery::from_str(replacement).is_ok();
                if !valid {
                    return Err(ConfigError::new(
                        format!("{field}.prefix_rewrite"),
                        format_args!(
                            "{replacement:?} is not a valid path (it must start with '/' and \
                             have no query)"
                        ),
                    ));
                }
                Some(PrefixRewrite {
                    prefix: prefix.clone(),
                    replacement: replacement.as_str().into(),
                })
            }
            (Some(_), _) => {
                return Err(ConfigError::new(
                    format!("{field}.prefix_rewrite"),
                    "only allowed on a route with a prefix path match",
                ));
            }
        };
        let host_rewrite = cfg
            .host_rewrite
            .as_ref()
            .map(|h| {
                let valid = Authority::from_str(h).is_ok();
                HeaderValue::from_str(h)
                    .ok()
                    .filter(|_| valid)
                    .ok_or_else(|| {
                        ConfigError::new(
                            format!("{field}.host_rewrite"),
                            format_args!("{h:?} is not a valid authority (host[:port])"),
                        )
                    })
            })
            .transpose()?;
        let request_headers = HeaderMutations::build(
            &format!("{field}.request_headers_to_add"),
            &cfg.request_headers_to_add,
            &format!("{field}.request_headers_to_remove"),
            &cfg.request_headers_to_remove,
        )?;
        let response_headers = HeaderMutations::build(
            &format!("{field}.response_headers_to_add"),
            &cfg.response_headers_to_add,
            &format!("{field}.response_headers_to_remove"),
            &cfg.response_headers_to_remove,
        )?;
        let name = match &cfg.name {
            Some(name) => name.as_str().into(),
            None => format!("{vhost}/{index}").into(),
        };
        Ok(Self {
            name,
            vhost: vhost.clone(),
            cluster: cfg.cluster.as_str().into(),
            timeout: cfg.timeout,
            retry,
            host_rewrite,
            request_headers,
            response_headers,
            filters: std::sync::OnceLock::new(),
            listener_stack: std::sync::OnceLock::new(),
            stats: Arc::default(),
            rewrite,
        })
    }

    /// With a `prefix_rewrite` configured, the new path-and-query: the matched prefix
    /// replaced by the rewrite, the query string kept. `None` when the route has no
    /// rewrite or `path_and_query` does not start with the route's prefix.
    ///
    /// `/api/` rewritten to `/v2/` turns `/api/users?id=1` into `/v2/users?id=1`.
    pub fn rewrite_path(&self, path_and_query: &str) -> Option<String> {
        let rw = self.rewrite.as_ref()?;
        let path = path_and_query
            .split_once('?')
            .map_or(path_and_query, |(p, _)| p);
        if !path.starts_with(&*rw.prefix) {
            return None;
        }
        let rest = path_and_query.get(rw.prefix.len()..)?;
        let mut out = String::with_capacity(rw.replacement.len() + rest.len());
        out.push_str(&rw.replacement);
        out.push_str(rest);
        Some(out)
    }
}

// === impl HeaderMutations ===

/// Validated header changes: removals first, then additions (appended or replacing).
#[derive(Debug, Clone, Default)]
pub struct HeaderMutations {
    remove: Box<[HeaderName]>,
    add: Box<[AddHeader]>,
}

#[derive(Debug, Clone)]
struct AddHeader {
    name: HeaderName,
    value: HeaderValue,
    append: bool,
}

impl HeaderMutations {
    fn build(
        add_field: &str,
        add: &[HeaderValueConfig],
        remove_field: &str,
        remove: &[String],
    ) -> Result<Self, ConfigError> {
        let bad_name = |field: String, name: &str| {
            ConfigError::new(field, format_args!("{name:?} is not a valid header name"))
        };
        let remove = remove
            .iter()
            .enumerate()
            .map(|(i, n)| {
                HeaderName::from_bytes(n.as_bytes())
                    .map_err(|_| bad_name(format!("{remove_field}[{i}]"), n))
            })
            .collect::<Result<_, _>>()?;
        let add = add
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let name = HeaderName::from_bytes(h.name.as_bytes())
                    .map_err(|_| bad_name(format!("{add_field}[{i}].name"), &h.name))?;
                let value = HeaderValue::from_bytes(h.value.as_bytes()).map_err(|_| {
                    ConfigError::new(
                        format!("{add_field}[{i}].value"),
                        format_args!("{:?} is not a valid header value", h.value),
                    )
                })?;
                Ok(AddHeader {
                    name,
                    value,
                    append: h.append,
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        Ok(Self { remove, add })
    }

    /// Removes the configured headers, then adds the configured ones: appended to any
    /// existing values with `append`, replacing them otherwise.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in self.remove.iter() {
            headers.remove(name);
        }
        for h in self.add.iter() {
            if h.append {
                headers.append(h.name.clone(), h.value.clone());
            } else {
                headers.insert(h.name.clone(), h.value.clone());
            }
        }
    }

    /// Whether there is nothing to change.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.add.is_empty()
    }
}

// === impl RetryPolicy ===

/// A validated retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (at most 10).
    pub attempts: u32,
    /// Timeout of each attempt; the route timeout bounds the total.
    pub per_try_timeout: Option<Duration>,
    /// [`RetryOn`] conditions as bit flags.
    retry_on: u8,
}

impl RetryPolicy {
    /// Validates a retry section; `field` is its path.
    ///
    /// # Errors
    /// More attempts than allowed, naming `{field}.attempts`.
    pub fn build(field: &str, cfg: &RetryPolicyConfig) -> Result<Self, ConfigError> {
        if cfg.attempts > MAX_RETRY_ATTEMPTS {
            return Err(ConfigError::new(
                format!("{field}.attempts"),
                format_args!(
                    "{} is above the maximum of {MAX_RETRY_ATTEMPTS}",
                    cfg.attempts
                ),
            ));
        }
        let mut retry_on = cfg.retry_on.iter().fold(0, |bits, &c| bits | bit(c));
        // 502, 503 and 504 are server errors too.
        if retry_on & bit(RetryOn::ServerError) != 0 {
            retry_on |= bit(RetryOn::GatewayError);
        }
        Ok(Self {
            attempts: cfg.attempts,
            per_try_timeout: cfg.per_try_timeout,
            retry_on,
        })
    }

    /// Whether a failure of kind `cond` may be retried. Configuring `5xx` also covers
    /// [`RetryOn::GatewayError`].
    pub fn retries_on(&self, cond: RetryOn) -> bool {
        self.retry_on & bit(cond) != 0
    }
}

fn bit(cond: RetryOn) -> u8 {
    match cond {
        RetryOn::ConnectFailure => 1,
        RetryOn::Reset => 1 << 1,
        RetryOn::ServerError => 1 << 2,
        RetryOn::GatewayError => 1 << 3,
        RetryOn::PerTryTimeout => 1 << 4,
    }
}
