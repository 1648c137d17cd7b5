//! [`JwtAuthLayer`]: where the token is found, the key set asked for, the claims
//! written to headers and the consumer put in the request.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderName, HeaderValue};
use proxy_core::{HttpRequest, HttpResponse};
use serde_json::Value;
use tower_service::Service;

use super::{
    config::{JwksSource, JwtAuthConfig, TokenSource},
    fetch::Fetcher,
    jwks::{Jwks, JwksCaches, KeySet, RemoteCache},
    unauthorized,
    verify::Verifier,
    Failure,
};
use crate::{metrics::AuthCounters, ConfigError};

/// Checks the JWT of each request (see [`crate::auth`]).
///
/// # Example
/// Keys inline, token from `authorization: Bearer`, the `sub` claim as `x-user`:
/// ```
/// use jsonwebtoken::{jwk::JwkSet, Algorithm, EncodingKey, Header};
/// use proxy_core::{Body, BoxError, HttpRequest};
/// use proxy_filters::auth::{ClaimHeader, Consumer, JwksSource, JwtAlgorithm, JwtAuthConfig, JwtAuthLayer};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// // RFC 8037's Ed25519 test key.
/// let jwks: JwkSet = serde_json::from_str(r#"{"keys": [{"kty": "OKP", "crv": "Ed25519",
///     "kid": "k1", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#)?;
/// let mut cfg = JwtAuthConfig::new(vec![JwtAlgorithm::EdDSA], JwksSource::Inline(jwks));
/// cfg.issuers = vec!["https://idp.example/".into()];
/// cfg.claims_to_headers = vec![ClaimHeader { claim: "sub".into(), header: "x-user".into() }];
/// let svc = ServiceBuilder::new()
///     .layer(JwtAuthLayer::try_from(&cfg)?)
///     .service(service_fn(|req: HttpRequest| async move {
///         let who = Consumer::of(&req).map(|c| c.id.to_string()).unwrap_or_default();
///         assert_eq!(req.headers()["x-user"], who.as_str());
///         Ok::<_, BoxError>(http::Response::new(Body::from(who)))
///     }));
///
/// let pkcs8 = [
///     0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
///     0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
///     0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
/// ];
/// let mut header = Header::new(Algorithm::EdDSA);
/// header.kid = Some("k1".into());
/// let exp = jsonwebtoken::get_current_timestamp() + 300;
/// let claims = serde_json::json!({"sub": "alice", "iss": "https://idp.example/", "exp": exp});
/// let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(&pkcs8))?;
///
/// let ok = http::Request::get("/")
///     .header("authorization", format!("Bearer {token}"))
///     .header("x-user", "forged")
///     .body(Body::empty())?;
/// assert_eq!(svc.clone().oneshot(ok).await?.status(), 200);
///
/// let missing = http::Request::get("/").body(Body::empty())?;
/// let refused = svc.oneshot(missing).await?;
/// assert_eq!(refused.status(), 401);
/// assert_eq!(refused.headers()["x-proxy-error"], "missing");
/// # Ok::<_, BoxError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct JwtAuthLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    verifier: Verifier,
    jwks: Jwks,
    sources: Box<[Source]>,
    claim_headers: Box<[(String, HeaderName)]>,
    counters: Arc<AuthCounters>,
}

impl JwtAuthLayer {
    /// Validates `cfg`, counting into `counters`. Nothing is fetched yet: a remote
    /// JWKS is fetched by the first request that needs it.
    ///
    /// # Errors
    /// No algorithm, a bad header name, URL or CA file, an unusable inline key,
    /// naming the field.
    pub fn new(cfg: &JwtAuthConfig, counters: Arc<AuthCounters>) -> Result<Self, ConfigError> {
        Self::build(cfg, counters, None)
    }

    /// As [`JwtAuthLayer::new`], with the remote key set cache of filter `key` taken
    /// from `caches` when its `jwks.remote` is unchanged (a reload keeps the keys).
    ///
    /// # Errors
    /// As [`JwtAuthLayer::new`].
    pub fn with_caches(
        cfg: &JwtAuthConfig,
        counters: Arc<AuthCounters>,
        caches: &JwksCaches,
        key: &str,
    ) -> Result<Self, ConfigError> {
        Self::build(cfg, counters, Some((caches, key)))
    }

    fn build(
        cfg: &JwtAuthConfig,
        counters: Arc<AuthCounters>,
        caches: Option<(&JwksCaches, &str)>,
    ) -> Result<Self, ConfigError> {
        let verifier = Verifier::new(cfg)?;
        let jwks = match &cfg.jwks {
            JwksSource::Inline(set) => {
                let keys = KeySet::from_jwks(set).map_err(|(i, reason)| {
                    ConfigError::invalid(format!("jwks.inline.keys[{i}]"), reason)
                })?;
                Jwks::Inline(Arc::new(keys))
            }
            JwksSource::Remote(remote) => {
                let make = || {
                    let fetcher = Fetcher::new(remote, "jwks.remote")?;
                    Ok(Arc::new(RemoteCache::new(
                        fetcher,
                        remote.min_refresh_interval,
                        remote.max_age,
                        counters.clone(),
                    )))
                };
                Jwks::Remote(match caches {
                    Some((caches, key)) => caches.get_or_make(key, remote, make)?,
                    None => make()?,
                })
            }
        };
        let sources = sources(&cfg.from, "from")?;
        let mut claim_headers = Vec::new();
        for (i, c) in cfg.claims_to_headers.iter().enumerate() {
            let name = HeaderName::try_from(c.header.as_str()).map_err(|_| {
                ConfigError::invalid(
                    format!("claims_to_headers[{i}].header"),
                    format!("{:?} is not a valid header name", c.header),
                )
            })?;
            claim_headers.push((c.claim.clone(), name));
        }
        Ok(Self {
            shared: Arc::new(Shared {
                verifier,
                jwks,
                sources,
                claim_headers: claim_headers.into(),
                counters,
            }),
        })
    }
}

impl TryFrom<&JwtAuthConfig> for JwtAuthLayer {
    type Error = ConfigError;

    /// [`JwtAuthLayer::new`] with counters of its own.
    fn try_from(cfg: &JwtAuthConfig) -> Result<Self, ConfigError> {
        Self::new(cfg, Arc::default())
    }
}

impl<S> tower_layer::Layer<S> for JwtAuthLayer {
    type Service = JwtAuth<S>;

    fn layer(&self, inner: S) -> JwtAuth<S> {
        JwtAuth {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// Lets through the requests with a valid token (see [`crate::auth`]).
#[derive(Debug, Clone)]
pub struct JwtAuth<S> {
    inner: S,
    shared: Arc<Shared>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S> Service<HttpRequest> for JwtAuth<S>
where
    S: Service<HttpRequest, Response = HttpResponse> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = BoxFuture<Result<HttpResponse, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: HttpRequest) -> Self::Future {
        // The instance made ready is the one called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        Box::pin(async move {
            for (_, name) in shared.claim_headers.iter() {
                req.headers_mut().remove(name);
            }
            match shared.authenticate(&req).await {
                Ok(consumer) => {
                    shared.counters.successes.inc();
                    shared.write_claims(&mut req, &consumer);
                    req.extensions_mut().insert(consumer);
                    inner.call(req).await
                }
                Err(failure) => {
                    shared.counters.fail(failure);
                    tracing::debug!(reason = failure.as_str(), "jwt refused");
                    Ok(unauthorized(&req, failure, true))
                }
            }
        })
    }
}

impl Shared {
    async fn authenticate(&self, req: &HttpRequest) -> Result<super::Consumer, Failure> {
        let token = find(&self.sources, req)?;
        let peek = self.verifier.peek(&token)?;
        let keys = match &self.jwks {
            Jwks::Inline(keys) => keys.clone(),
            Jwks::Remote(cache) => cache
                .keys(peek.kid.as_deref())
                .await
                .ok_or(Failure::JwksUnavailable)?,
        };
        self.verifier
            .verify_peeked(&token, &peek, &keys)
            .map(|v| v.consumer)
    }

    fn write_claims(&self, req: &mut HttpRequest, consumer: &super::Consumer) {
        for (claim, name) in self.claim_headers.iter() {
            let Some(value) = consumer.claims.get(claim) else {
                continue;
            };
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            match HeaderValue::try_from(text) {
                Ok(v) => {
                    req.headers_mut().insert(name.clone(), v);
                }
                Err(_) => tracing::debug!(%claim, "claim not valid as a header value"),
            }
        }
    }
}

/// Where a credential is looked for.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    Header {
        name: HeaderName,
        prefix: Option<String>,
    },
    Query(String),
}

/// The sources of `from`, checked; `field` is its path.
pub(crate) fn sources(from: &[TokenSource], field: &str) -> Result<Box<[Source]>, ConfigError> {
    if from.is_empty() {
        return Err(ConfigError::invalid(field, "needs at least one source"));
    }
    from.iter()
        .enumerate()
        .map(|(i, s)| match s {
            TokenSource::Header { name, prefix } => HeaderName::try_from(name.as_str())
                .map(|name| Source::Header {
                    name,
                    prefix: prefix.clone(),
                })
                .map_err(|_| {
                    ConfigError::invalid(
                        format!("{field}[{i}].header.name"),
                        format!("{name:?} is not a valid header name"),
                    )
                }),
            TokenSource::Query(q) if q.is_empty() => Err(ConfigError::invalid(
                format!("{field}[{i}].query"),
                "must not be empty",
            )),
            TokenSource::Query(q) => Ok(Source::Query(q.clone())),
        })
        .collect()
}

/// The credential of `req` from the first source that has one: `Missing` when
/// none has, `Malformed` when it is not text or is empty after its prefix.
pub(crate) fn find(sources: &[Source], req: &HttpRequest) -> Result<String, Failure> {
    for source in sources {
        match source {
            Source::Header { name, prefix } => {
                let Some(value) = req.headers().get(name) else {
                    continue;
                };
                let value = value.to_str().map_err(|_| Failure::Malformed)?;
                let rest = match prefix {
                    Some(p) => match value.get(..p.len()) {
                        Some(head) if head.eq_ignore_ascii_case(p) => &value[p.len()..],
                        _ => return Err(Failure::Malformed),
                    },
                    None => value,
                };
                let token = rest.trim();
                if token.is_empty() {
                    return Err(Failure::Malformed);
                }
                return Ok(token.to_owned());
            }
            Source::Query(param) => {
                let Some(query) = req.uri().query() else {
                    continue;
                };
                for pair in query.split('&') {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if k == param {
                        let v = percent_decode(v).ok_or(Failure::Malformed)?;
                        if v.is_empty() {
                            return Err(Failure::Malformed);
                        }
                        return Ok(v);
                    }
                }
            }
        }
    }
    Err(Failure::Missing)
}

/// `%XX` escapes decoded; `None` for a bad escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxy_core::Body;

    fn req(uri: &str, headers: &[(&str, &str)]) -> HttpRequest {
        let mut b = http::Request::get(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::empty()).unwrap()
    }

    #[test]
    fn finds_the_credential() {
        let s = sources(
            &[
                TokenSource::Header {
                    name: "authorization".into(),
                    prefix: Some("Bearer ".into()),
                },
                TokenSource::Query("token".into()),
            ],
            "from",
        )
        .unwrap();
        assert_eq!(
            find(&s, &req("/", &[("authorization", "bearer abc")])),
            Ok("abc".into())
        );
        assert_eq!(
            find(&s, &req("/", &[("authorization", "Basic abc")])),
            Err(Failure::Malformed)
        );
        assert_eq!(
            find(&s, &req("/", &[("authorization", "Bearer ")])),
            Err(Failure::Malformed)
        );
        assert_eq!(find(&s, &req("/?a=1&token=x%2Ey", &[])), Ok("x.y".into()));
        assert_eq!(find(&s, &req("/?token=%zz", &[])), Err(Failure::Malformed));
        assert_eq!(find(&s, &req("/?other=1", &[])), Err(Failure::Missing));
        assert_eq!(find(&s, &req("/", &[])), Err(Failure::Missing));
    }

    #[test]
    fn bad_sources_name_the_field() {
        let err = sources(
            &[TokenSource::Header {
                name: "bad name".into(),
                prefix: None,
            }],
            "from",
        )
        .unwrap_err();
        assert_eq!(err.field(), "from[0].header.name");
        assert_eq!(sources(&[], "from").unwrap_err().field(), "from");
    }
}
