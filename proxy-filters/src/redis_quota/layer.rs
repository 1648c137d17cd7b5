//! [`RedisQuotaLayer`] and the [`RedisQuota`] service.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{SystemTime, UNIX_EPOCH},
};

use http::{HeaderName, HeaderValue, StatusCode};
use proxy_core::{HttpRequest, HttpResponse};
use tower_service::Service;

use super::{
    backend::Backend,
    config::{FailureMode, RedisQuotaConfig},
    metrics::RedisQuotaCounters,
    verdicts::OverQuota,
    window::{redis_key, Window},
};
use crate::{
    local_rate_limit::{KeySource, LocalRateLimitLayer},
    ConfigError,
};

/// `x-ratelimit-limit`: the requests a window admits.
pub const LIMIT_HEADER: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// `x-ratelimit-remaining`: the requests left in this window.
pub const REMAINING_HEADER: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
/// `x-ratelimit-reset`: whole seconds until this window ends.
pub const RESET_HEADER: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// One filter's validated settings and shared state.
#[derive(Debug)]
pub(super) struct Quota {
    key: Option<KeySource>,
    limit: u64,
    window_secs: u64,
    failure_mode: FailureMode,
    prefix: String,
    floor: Option<LocalRateLimitLayer>,
    backend: Backend,
    over_quota: OverQuota,
    counters: Arc<RedisQuotaCounters>,
}

/// Applies [`RedisQuota`] to a service. Cheap to clone; clones share the
/// connection, the over-quota verdicts and the local limit.
///
/// # Example
/// ```
/// use std::{num::NonZeroU64, time::Duration};
/// use proxy_core::{Body, BoxError, HttpRequest};
/// use proxy_filters::{
///     local_rate_limit::KeySource,
///     redis_quota::{FailureMode, RedisConfig, RedisQuotaConfig, RedisQuotaLayer},
/// };
/// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// // 1000 requests a minute per consumer, shared by every gateway using this Redis.
/// let mut cfg = RedisQuotaConfig::new(
///     RedisConfig::new("redis://127.0.0.1:1"), // nothing listens there
///     Some(KeySource::Consumer),
///     NonZeroU64::new(1000).unwrap(),
///     Duration::from_secs(60),
/// );
/// cfg.failure_mode = FailureMode::Closed;
/// let mut svc = ServiceBuilder::new()
///     .layer(RedisQuotaLayer::try_from(&cfg)?)
///     .service(service_fn(|_req: HttpRequest| async {
///         Ok::<_, BoxError>(http::Response::new(Body::empty()))
///     }));
/// let mut req = http::Request::new(Body::empty());
/// req.extensions_mut().insert(proxy_filters::auth::Consumer::new("alice"));
/// // Redis is unreachable and the filter fails closed.
/// let resp = svc.ready().await?.call(req).await?;
/// assert_eq!(resp.status(), 503);
/// # Ok::<_, BoxError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct RedisQuotaLayer {
    quota: Arc<Quota>,
}

impl RedisQuotaLayer {
    /// Validates `cfg`, counting in `counters`; `name` (the section's `name`, else
    /// the route's or listener's) makes the default key prefix `quota:<name>`. Called
    /// inside a tokio runtime, it starts connecting (in the background); else the
    /// first request connects.
    ///
    /// # Errors
    /// A window that is not a whole number of seconds, a URL that is not `redis://`,
    /// a zero timeout, a bad `local` section; each names its field.
    pub fn new(
        cfg: &RedisQuotaConfig,
        name: &str,
        counters: Arc<RedisQuotaCounters>,
    ) -> Result<Self, ConfigError> {
        let window_secs = cfg.window_secs()?;
        let info = cfg.connection_info()?;
        let floor =
            match &cfg.local {
                Some(local) => Some(LocalRateLimitLayer::new(local, Arc::default()).map_err(
                    |e| ConfigError::invalid(format!("local.{}", e.field()), e.reason()),
                )?),
                None => None,
            };
        let r = &cfg.redis;
        let backend = Backend::new(info, r.timeout, r.connect_timeout, r.max_in_flight.get())
            .map_err(|e| ConfigError::invalid("redis.url", e.to_string()))?;
        let quota = Arc::new(Quota {
            key: cfg.key.clone(),
            limit: cfg.limit.get(),
            window_secs,
            failure_mode: cfg.failure_mode,
            prefix: cfg
                .prefix
                .clone()
                .unwrap_or_else(|| format!("quota:{}", cfg.name.as_deref().unwrap_or(name))),
            floor,
            backend,
            over_quota: OverQuota::new(cfg.max_cached_keys.get()),
            counters,
        });
        // Built inside a runtime (a server loading its config): connect now rather
        // than on the first request. The task holds the filter only while it runs.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&quota);
            runtime.spawn(async move {
                if let Some(quota) = weak.upgrade() {
                    quota.backend.warm_up().await;
                }
            });
        }
        Ok(Self { quota })
    }

    /// This filter's counters.
    pub fn counters(&self) -> &Arc<RedisQuotaCounters> {
        &self.quota.counters
    }

    pub(super) fn from_quota(quota: Arc<Quota>) -> Self {
        Self { quota }
    }

    pub(super) fn downgrade(&self) -> std::sync::Weak<Quota> {
        Arc::downgrade(&self.quota)
    }

    /// Whether both are the same filter (one connection, one set of verdicts).
    pub fn same_filter(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.quota, &other.quota)
    }
}

impl TryFrom<&RedisQuotaConfig> for RedisQuotaLayer {
    type Error = ConfigError;

    /// [`RedisQuotaLayer::new`] with counters of its own, named `default` unless the
    /// section has a `name`.
    fn try_from(cfg: &RedisQuotaConfig) -> Result<Self, ConfigError> {
        Self::new(cfg, "default", Arc::default())
    }
}

impl<S> tower_layer::Layer<S> for RedisQuotaLayer {
    type Service = RedisQuota<S>;

    fn layer(&self, inner: S) -> RedisQuota<S> {
        RedisQuota {
            inner,
            quota: self.quota.clone(),
        }
    }
}

/// Counts each request in Redis against its key's quota for the current window and
/// answers 429 past it (see [the module docs](super)).
#[derive(Debug, Clone)]
pub struct RedisQuota<S> {
    inner: S,
    quota: Arc<Quota>,
}

/// The future of [`RedisQuota`]: a Redis round trip, then the inner service's
/// future (boxed: the round trip dwarfs the allocation).
pub type ResponseFuture<E> = Pin<Box<dyn Future<Output = Result<HttpResponse, E>> + Send>>;

impl<S> Service<HttpRequest> for RedisQuota<S>
where
    S: Service<HttpRequest, Response = HttpResponse> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: HttpRequest) -> Self::Future {
        let q = self.quota.clone();
        // The instance made ready is the one called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if let Some(floor) = &q.floor {
            if let Some(resp) = floor.limits.refuse(&req) {
                q.counters.limited_local.inc();
                return Box::pin(std::future::ready(Ok(resp)));
            }
        }
        let key = match &q.key {
            None => None,
            Some(source) => match source.value(&req) {
                Some(value) => Some((source, value)),
                None => {
                    q.counters.unkeyed.inc();
                    return Box::pin(inner.call(req));
                }
            },
        };
        let now_ms = unix_millis();
        let window = Window::at(now_ms, q.window_secs);
        let redis_key = redis_key(&q.prefix, key, window);
        let hash = q.over_quota.hash(&redis_key);
        if q.over_quota.contains(hash, now_ms) {
            q.counters.limited_cached.inc();
            return Box::pin(std::future::ready(Ok(q.over_limit(&req, window, now_ms))));
        }
        Box::pin(async move {
            let counted = q
                .backend
                .incr(&redis_key, window.ttl_ms(now_ms), &q.counters)
                .await;
            let count = match counted {
                Ok(n) => n,
                Err(err) => match q.failure_mode {
                    FailureMode::Open => {
                        q.counters.failed_open.inc();
                        tracing::debug!(%err, "redis quota unavailable: failing open");
                        return inner.call(req).await;
                    }
                    FailureMode::Closed => {
                        q.counters.failed_closed.inc();
                        tracing::debug!(%err, "redis quota unavailable: failing closed");
                        return Ok(unavailable(&req));
                    }
                },
            };
            if count > q.limit {
                q.counters.limited.inc();
                q.over_quota.insert(hash, window.end_ms, now_ms);
                return Ok(q.over_limit(&req, window, now_ms));
            }
            q.counters.allowed.inc();
            let mut resp = inner.call(req).await?;
            q.quota_headers(&mut resp, q.limit - count, window.reset_secs(now_ms));
            Ok(resp)
        })
    }
}

impl Quota {
    /// The 429 of a key over its quota in `window`.
    fn over_limit(&self, req: &HttpRequest, window: Window, now_ms: u64) -> HttpResponse {
        let mut resp = crate::local_reply::reply(
            req.headers(),
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "quota exceeded\n",
        );
        let reset = window.reset_secs(now_ms);
        self.quota_headers(&mut resp, 0, reset);
        resp.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(reset));
        resp
    }

    fn quota_headers(&self, resp: &mut HttpResponse, remaining: u64, reset: u64) {
        let h = resp.headers_mut();
        h.insert(LIMIT_HEADER, HeaderValue::from(self.limit));
        h.insert(REMAINING_HEADER, HeaderValue::from(remaining));
        h.insert(RESET_HEADER, HeaderValue::from(reset));
    }
}

/// `failure_mode: closed` with Redis unavailable: 503, so that clients and retry
/// policies take it for the proxy's failure, not for the consumer's quota.
fn unavailable(req: &HttpRequest) -> HttpResponse {
    let mut resp = crate::local_reply::reply(
        req.headers(),
        StatusCode::SERVICE_UNAVAILABLE,
        "quota_unavailable",
        "quota service unavailable\n",
    );
    resp.headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
