//! [`ApiKeyAuthLayer`]: a key from a header or query parameter, hashed and compared
//! in constant time with the configured hashes.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use proxy_core::{HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_service::Service;

use super::{
    config::ApiKeyAuthConfig,
    layer::{find, sources, Source},
    unauthorized, Consumer, Failure,
};
use crate::{local_reply::LocalOr, metrics::AuthCounters, ConfigError};

/// Lets through the requests carrying one of the configured API keys, as the key's
/// [`Consumer`]; others get 401 with `x-proxy-error: missing` or `invalid_api_key`.
///
/// # Example
/// ```
/// use proxy_core::{Body, BoxError, HttpRequest};
/// use proxy_filters::auth::{ApiKeyAuthConfig, ApiKeyAuthLayer, ApiKeyEntry, Consumer};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let cfg = ApiKeyAuthConfig::new(vec![ApiKeyEntry::for_key("batch-job", "s3cret")]);
/// let svc = ServiceBuilder::new()
///     .layer(ApiKeyAuthLayer::try_from(&cfg)?)
///     .service(service_fn(|req: HttpRequest| async move {
///         assert_eq!(&*Consumer::of(&req).unwrap().id, "batch-job");
///         Ok::<_, BoxError>(http::Response::new(Body::empty()))
///     }));
/// let good = http::Request::get("/").header("x-api-key", "s3cret").body(Body::empty())?;
/// assert_eq!(svc.clone().oneshot(good).await?.status(), 200);
/// let bad = http::Request::get("/").header("x-api-key", "guess").body(Body::empty())?;
/// let refused = svc.oneshot(bad).await?;
/// assert_eq!(refused.status(), 401);
/// assert_eq!(refused.headers()["x-proxy-error"], "invalid_api_key");
/// # Ok::<_, BoxError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ApiKeyAuthLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    keys: Box<[([u8; 32], Consumer)]>,
    sources: Box<[Source]>,
    counters: Arc<AuthCounters>,
}

impl ApiKeyAuthLayer {
    /// Validates `cfg`, counting into `counters`.
    ///
    /// # Errors
    /// No key, a hash that is not 64 hex digits, an empty consumer, a bad source,
    /// naming the field.
    pub fn new(cfg: &ApiKeyAuthConfig, counters: Arc<AuthCounters>) -> Result<Self, ConfigError> {
        if cfg.keys.is_empty() {
            return Err(ConfigError::invalid("keys", "needs at least one key"));
        }
        let mut keys = Vec::with_capacity(cfg.keys.len());
        for (i, k) in cfg.keys.iter().enumerate() {
            if k.consumer.is_empty() {
                return Err(ConfigError::invalid(
                    format!("keys[{i}].consumer"),
                    "must not be empty",
                ));
            }
            let hash = parse_hex(&k.sha256).ok_or_else(|| {
                ConfigError::invalid(
                    format!("keys[{i}].sha256"),
                    "is not a SHA-256 in hex (64 hex digits)",
                )
            })?;
            keys.push((hash, Consumer::new(k.consumer.as_str())));
        }
        Ok(Self {
            shared: Arc::new(Shared {
                keys: keys.into(),
                sources: sources(&cfg.from, "from")?,
                counters,
            }),
        })
    }
}

fn parse_hex(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        let hex = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(hex, 16).ok()?;
    }
    Some(out)
}

impl TryFrom<&ApiKeyAuthConfig> for ApiKeyAuthLayer {
    type Error = ConfigError;

    /// [`ApiKeyAuthLayer::new`] with counters of its own.
    fn try_from(cfg: &ApiKeyAuthConfig) -> Result<Self, ConfigError> {
        Self::new(cfg, Arc::default())
    }
}

impl<S> tower_layer::Layer<S> for ApiKeyAuthLayer {
    type Service = ApiKeyAuth<S>;

    fn layer(&self, inner: S) -> ApiKeyAuth<S> {
        ApiKeyAuth {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// Lets through the requests with a configured API key (see [`ApiKeyAuthLayer`]).
#[derive(Debug, Clone)]
pub struct ApiKeyAuth<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl Shared {
    fn check(&self, req: &HttpRequest) -> Result<Consumer, Failure> {
        let key = find(&self.sources, req)?;
        let hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        // Every entry is compared, whichever matches: the time does not tell which.
        let mut found = None;
        for (h, consumer) in self.keys.iter() {
            if bool::from(h.ct_eq(&hash)) {
                found = Some(consumer);
            }
        }
        found.cloned().ok_or(Failure::InvalidApiKey)
    }
}

impl<S> Service<HttpRequest> for ApiKeyAuth<S>
where
    S: Service<HttpRequest, Response = HttpResponse>,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = LocalOr<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: HttpRequest) -> Self::Future {
        match self.shared.check(&req) {
            Ok(consumer) => {
                self.shared.counters.successes.inc();
                req.extensions_mut().insert(consumer);
                LocalOr::inner(self.inner.call(req))
            }
            Err(failure) => {
                self.shared.counters.fail(failure);
                LocalOr::local(unauthorized(&req, failure, false))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ApiKeyEntry;

    #[test]
    fn bad_entries_name_the_field() {
        let mut cfg = ApiKeyAuthConfig::new(vec![]);
        assert_eq!(ApiKeyAuthLayer::try_from(&cfg).unwrap_err().field(), "keys");
        cfg.keys = vec![
            ApiKeyEntry::for_key("a", "k"),
            ApiKeyEntry {
                consumer: "b".into(),
                sha256: "zz".repeat(32),
            },
        ];
        assert_eq!(
            ApiKeyAuthLayer::try_from(&cfg).unwrap_err().field(),
            "keys[1].sha256"
        );
        cfg.keys[1].sha256 = "ab".repeat(31);
        assert!(ApiKeyAuthLayer::try_from(&cfg).is_err());
        cfg.keys[1].sha256 = "AB".repeat(32);
        assert!(ApiKeyAuthLayer::try_from(&cfg).is_ok());
    }
}
