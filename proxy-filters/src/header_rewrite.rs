//! Header add/remove/rewrite on requests and responses.
//!
//! Per direction the operations run in this order: `remove`, `rewrite`, `set`
//! (replace), `append` (add a value). A `rewrite` regex follows the config's one regex
//! rule ([`proxy_core::matcher`]): it must match a value **whole**, and the value is
//! then replaced by `replacement` with `$1`/`${name}` expanded; values it does not
//! match are left as they are. To change part of a value, capture the rest:
//! `regex: '(.*)-internal(.*)'`, `replacement: '${1}${2}'`.
//!
//! ```yaml
//! http_filters:
//!   - typed: header_rewrite
//!     config:
//!       request:
//!         remove: [x-internal]
//!         rewrite: [{ name: x-user, regex: 'user-(\d+)', replacement: 'id=$1' }]
//!         set: [{ name: x-env, value: prod }]
//!       response: { remove: [server], append: [{ name: x-served-by, value: edge }] }
//! ```

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderMap, HeaderName, HeaderValue};
use proxy_core::{HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use tower_service::Service;

use crate::{
    matcher::{Header, Pattern},
    ConfigError,
};

/// The registered name.
pub const NAME: &str = "header_rewrite";

/// The `header_rewrite` filter's section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderRewriteConfig {
    /// Changes to request headers.
    #[serde(default)]
    pub request: HeaderOps,
    /// Changes to response headers.
    #[serde(default)]
    pub response: HeaderOps,
}

/// Changes to one header map.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderOps {
    /// Headers removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<Header>,
    /// Regex substitutions in header values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rewrite: Vec<RewriteConfig>,
    /// Headers set, replacing any value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<HeaderEntry>,
    /// Values appended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub append: Vec<HeaderEntry>,
}

/// A header name and value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderEntry {
    /// The name.
    pub name: Header,
    /// The value (visible ASCII and spaces).
    pub value: String,
}

/// Replaces each value of `name` that `regex` matches whole with `replacement`
/// (`$1`, `${name}` refer to capture groups).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteConfig {
    /// The header.
    pub name: Header,
    /// The expression a value must match whole (checked at load).
    pub regex: Pattern,
    /// The new value.
    pub replacement: String,
}

#[derive(Debug, Default)]
struct Ops {
    remove: Box<[HeaderName]>,
    rewrite: Box<[(HeaderName, regex::Regex, String)]>,
    set: Box<[(HeaderName, HeaderValue)]>,
    append: Box<[(HeaderName, HeaderValue)]>,
}

impl Ops {
    fn new(cfg: &HeaderOps, side: &str) -> Result<Self, ConfigError> {
        let values = |list: &[HeaderEntry], op: &str| {
            list.iter()
                .enumerate()
                .map(|(i, e)| {
                    HeaderValue::from_str(&e.value)
                        .map(|v| (e.name.0.clone(), v))
                        .map_err(|_| {
                            ConfigError::invalid(
                                format!("{side}.{op}[{i}].value"),
                                format!("{:?} is not a valid header value", e.value),
                            )
                        })
                })
                .collect::<Result<Box<[_]>, _>>()
        };
        let rewrite = cfg
            .rewrite
            .iter()
            .map(|r| {
                (
                    r.name.0.clone(),
                    r.regex.regex().clone(),
                    r.replacement.clone(),
                )
            })
            .collect();
        Ok(Self {
            remove: cfg.remove.iter().map(|h| h.0.clone()).collect(),
            rewrite,
            set: values(&cfg.set, "set")?,
            append: values(&cfg.append, "append")?,
        })
    }

    fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rewrite.is_empty()
            && self.set.is_empty()
            && self.append.is_empty()
    }

    fn apply(&self, headers: &mut HeaderMap) {
        for name in self.remove.iter() {
            headers.remove(name);
        }
        for (name, re, replacement) in self.rewrite.iter() {
            if !headers.contains_key(name) {
                continue;
            }
            let old: Vec<HeaderValue> = headers.get_all(name).iter().cloned().collect();
            let mut changed = false;
            let new: Vec<HeaderValue> = old
                .into_iter()
                .map(|v| {
                    let Ok(s) = v.to_str() else { return v };
                    // Anchored at both ends: one replacement of the whole value, or none.
                    match re.replace(s, replacement.as_str()) {
                        std::borrow::Cow::Borrowed(_) => v,
                        std::borrow::Cow::Owned(n) => {
                            changed = true;
                            // A replacement that makes an invalid value keeps the old one.
                            HeaderValue::from_str(&n).unwrap_or(v)
                        }
                    }
                })
                .collect();
            if changed {
                headers.remove(name);
                for v in new {
                    headers.append(name.clone(), v);
                }
            }
        }
        for (name, value) in self.set.iter() {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in self.append.iter() {
            headers.append(name.clone(), value.clone());
        }
    }
}

#[derive(Debug)]
struct Rules {
    request: Ops,
    response: Ops,
}

/// Applies [`HeaderRewrite`] to a service.
///
/// # Example
/// ```
/// use proxy_core::{Body, BoxError, HttpRequest};
/// use proxy_filters::header_rewrite::{HeaderEntry, HeaderOps, HeaderRewriteConfig, HeaderRewriteLayer};
///
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let cfg = HeaderRewriteConfig {
///     request: HeaderOps {
///         remove: vec!["x-debug".parse()?],
///         set: vec![HeaderEntry { name: "x-env".parse()?, value: "prod".into() }],
///         ..Default::default()
///     },
///     response: HeaderOps {
///         append: vec![HeaderEntry { name: "x-served-by".parse()?, value: "proxy".into() }],
///         ..Default::default()
///     },
/// };
/// let svc = ServiceBuilder::new()
///     .layer(HeaderRewriteLayer::try_from(&cfg)?)
///     .service(service_fn(|req: HttpRequest| async move {
///         assert_eq!(req.headers()["x-env"], "prod");
///         assert!(req.headers().get("x-debug").is_none());
///         Ok::<_, BoxError>(http::Response::new(Body::empty()))
///     }));
/// let req = http::Request::builder().header("x-debug", "1").body(Body::empty())?;
/// let resp = svc.oneshot(req).await?;
/// assert_eq!(resp.headers()["x-served-by"], "proxy");
/// # Ok::<_, BoxError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct HeaderRewriteLayer {
    rules: Arc<Rules>,
}

impl HeaderRewriteLayer {
    /// Validates `cfg`.
    ///
    /// # Errors
    /// An invalid header value, naming the field.
    pub fn new(cfg: &HeaderRewriteConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            rules: Arc::new(Rules {
                request: Ops::new(&cfg.request, "request")?,
                response: Ops::new(&cfg.response, "response")?,
            }),
        })
    }
}

impl TryFrom<&HeaderRewriteConfig> for HeaderRewriteLayer {
    type Error = ConfigError;

    /// [`HeaderRewriteLayer::new`].
    fn try_from(cfg: &HeaderRewriteConfig) -> Result<Self, ConfigError> {
        Self::new(cfg)
    }
}

impl<S> tower_layer::Layer<S> for HeaderRewriteLayer {
    type Service = HeaderRewrite<S>;

    fn layer(&self, inner: S) -> HeaderRewrite<S> {
        HeaderRewrite {
            inner,
            rules: self.rules.clone(),
        }
    }
}

/// Rewrites request and response headers (see [`self`]).
#[derive(Debug, Clone)]
pub struct HeaderRewrite<S> {
    inner: S,
    rules: Arc<Rules>,
}

impl<S> Service<HttpRequest> for HeaderRewrite<S>
where
    S: Service<HttpRequest, Response = HttpResponse>,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: HttpRequest) -> Self::Future {
        self.rules.request.apply(req.headers_mut());
        let rules = (!self.rules.response.is_empty()).then(|| self.rules.clone());
        ResponseFuture {
            fut: self.inner.call(req),
            rules,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`HeaderRewrite`]: applies the response rules.
    pub struct ResponseFuture<F> {
        #[pin]
        fut: F,
        rules: Option<Arc<Rules>>,
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<HttpResponse, E>>,
{
    type Output = Result<HttpResponse, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut resp = std::task::ready!(this.fut.poll(cx))?;
        if let Some(rules) = this.rules.as_ref() {
            rules.response.apply(resp.headers_mut());
        }
        Poll::Ready(Ok(resp))
    }
}
