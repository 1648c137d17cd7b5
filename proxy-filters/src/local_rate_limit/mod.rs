//! Local rate limiting with governor (GCRA): one bucket for everything this filter
//! sees (set it per route for a per-route limit), and keyed buckets per descriptor
//! (a header value such as an API key or a consumer id set by an auth filter, the
//! consumer itself as `jwt_auth` or `api_key_auth` put it in the request (`key:
//! consumer`), the source IP, the mTLS identity as the consumer).
//!
//! A limited request is answered `429 Too Many Requests` with `retry-after` (whole
//! seconds, at least 1) and `x-proxy-error: rate_limited`; RPC codecs map the 429 to
//! their overload status (gRPC `RESOURCE_EXHAUSTED`, Bolt/Dubbo server busy).
//!
//! # Keyed buckets and `overflow`
//!
//! Keyed buckets live in a table of at most `max_keys` keys per descriptor (split in
//! up to 16 shards of `max_keys / 16` each, chosen by the key's hash; a key's shard
//! being full is what "full" means below). Keys are stored as 64-bit keyed hashes
//! (no copy of the header value). Known keys take a shard read lock only. When a new
//! key finds its shard full, the descriptor's `overflow` policy decides:
//!
//! - `evict_lru` (the default): the least recently used key of the shard goes
//!   (approximated by CLOCK: a key used since the sweep hand last passed it is kept,
//!   O(1) amortised, under the shard's write lock only) and the new key gets a bucket of
//!   its own. A key seen again after its eviction starts with a full bucket. Size
//!   `max_keys` above the number of keys active within one refill period, else evicted
//!   keys get fresh bursts; a client rotating keys is held by a `source_ip` descriptor
//!   or the filter's `rate`, not by this one.
//! - `shared_bucket`: idle keys (whose bucket is full again) are dropped at most once
//!   a second per shard; past that, **all new keys share one overflow bucket** of the
//!   descriptor's rate, so while the table is full of busy keys nearly every first-time
//!   client is limited. Use it where a key flood must not reach the backend at all.
//! - `reject`: like `shared_bucket`, but a new key that finds no room is refused with
//!   `429`, `retry-after: 1` and `x-proxy-error: rate_limit_keys_full`.
//!
//! `evict_lru` is the default because it keeps the meaning of a per-key limit (every key
//! its own bucket) with bounded memory; the other two turn a full table into a denial
//! of service for every new key. Requests that found the table full are counted in
//! `proxy_filters_local_rate_limit_overflow_total`, evictions in
//! `proxy_filters_local_rate_limit_evictions_total`, and
//! `proxy_filters_local_rate_limit_keys` is the keys held by the keyed limiters of the
//! running config (never more than their `max_keys`; a limiter replaced by a reload
//! stops counting at once). A request without the descriptor's key (header absent) is
//! not limited by it. Metrics: `proxy_filters_local_rate_limit_{decisions_total,
//! overflow_total,evictions_total,keys}`.
//!
//! ```yaml
//! http_filters:
//!   - typed: local_rate_limit
//!     config:
//!       name: api                  # named: an unchanged section keeps its buckets on reload
//!       rate: { requests: 1000, per: 1s, burst: 200 }
//!       descriptors:
//!         - { key: { header: x-api-key }, rate: { requests: 10, per: 1s }, max_keys: 10000, overflow: evict_lru }
//!         - { key: source_ip, rate: { requests: 50, per: 1s }, overflow: reject }
//! ```

mod cache;
mod store;

use std::{
    hash::BuildHasher,
    num::{NonZeroU32, NonZeroUsize},
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use governor::{
    clock::{Clock, MonotonicClock},
    middleware::NoOpMiddleware,
    state::{InMemoryState, NotKeyed},
    Quota, RateLimiter,
};
use http::{HeaderValue, StatusCode};
use proxy_core::{HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use tower_service::Service;

pub use cache::LimiterCache;
pub(crate) use store::KeyTables;
use store::{KeyedBuckets, Refused};

use crate::{local_reply::LocalOr, matcher::Header, metrics::LocalRateLimitCounters, ConfigError};

/// The registered name.
pub const NAME: &str = "local_rate_limit";

/// The `local_rate_limit` filter's section: `rate`, `descriptors` or both.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalRateLimitConfig {
    /// Names this filter in metrics (default: the listener's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// One bucket shared by every request through this filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateConfig>,
    /// Keyed buckets; a request must pass all that apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub descriptors: Vec<DescriptorConfig>,
}

/// A rate: `requests` per `per`, with bursts up to `burst` (default `requests`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    /// Requests admitted per period.
    pub requests: NonZeroU32,
    /// The period, e.g. `1s`.
    #[serde(with = "humantime_serde")]
    pub per: Duration,
    /// The largest burst.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<NonZeroU32>,
}

/// A keyed limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DescriptorConfig {
    /// Where the key comes from.
    pub key: KeySource,
    /// The rate per key.
    pub rate: RateConfig,
    /// Keys tracked at most (default 10000).
    #[serde(default = "default_max_keys")]
    pub max_keys: NonZeroUsize,
    /// What a new key gets when the table is full (default `evict_lru`).
    #[serde(default)]
    pub overflow: Overflow,
}

/// What a new key gets when its descriptor's key table is full (see [the module
/// docs](self)): `overflow: evict_lru | shared_bucket | reject`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// The least recently used key goes; the new key gets its own bucket.
    #[default]
    EvictLru,
    /// New keys share one overflow bucket of the descriptor's rate.
    SharedBucket,
    /// New keys are refused: 429 with `x-proxy-error: rate_limit_keys_full`.
    Reject,
}

impl DescriptorConfig {
    /// A keyed limit of `rate` per key from `key`, tracking the default number of keys.
    pub fn new(key: KeySource, rate: RateConfig) -> Self {
        Self {
            key,
            rate,
            max_keys: default_max_keys(),
            overflow: Overflow::default(),
        }
    }
}

fn default_max_keys() -> NonZeroUsize {
    NonZeroUsize::new(10_000).unwrap_or(NonZeroUsize::MIN)
}

/// The key of a descriptor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum KeySource {
    /// A request header's value (an API key, a consumer id).
    Header(Header),
    /// The downstream peer IP.
    SourceIp,
    /// The mTLS peer identity (first URI SAN, else first DNS SAN, else subject).
    Identity,
    /// The consumer an auth filter before this one set (`jwt_auth`, `api_key_auth`:
    /// the request's [`crate::auth::Consumer`]); requests without one are not counted
    /// by this descriptor. Written `key: consumer`.
    Consumer,
}

/// A descriptor's key as found in a request (see [`KeySource`]): hashed by the
/// local limiter, written into the shared key by `redis_quota`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum KeyValue<'r> {
    /// A header value, an mTLS identity or a consumer id.
    Bytes(&'r [u8]),
    /// The downstream peer IP (the unspecified address when it is unknown).
    Ip(std::net::IpAddr),
}

impl KeySource {
    /// The key this source names in `req`, or `None` when the request has none (no
    /// such header, no mTLS identity, no consumer): such a request is not counted.
    pub(crate) fn value<'r>(&self, req: &'r HttpRequest) -> Option<KeyValue<'r>> {
        match self {
            KeySource::Header(h) => req
                .headers()
                .get(&h.0)
                .map(|v| KeyValue::Bytes(v.as_bytes())),
            KeySource::SourceIp => Some(KeyValue::Ip(
                req.extensions()
                    .get::<proxy_core::proxy::ConnInfo>()
                    .and_then(|c| c.peer)
                    .map_or(crate::matcher::NO_IP, |p| p.ip()),
            )),
            KeySource::Identity => {
                let peer = req
                    .extensions()
                    .get::<proxy_core::connection::TlsInfo>()
                    .and_then(|t| t.peer.as_ref())?;
                peer.uri_sans
                    .first()
                    .or(peer.dns_sans.first())
                    .or(peer.subject.as_ref())
                    .map(|id| KeyValue::Bytes(id.as_bytes()))
            }
            KeySource::Consumer => req
                .extensions()
                .get::<crate::auth::Consumer>()
                .map(|c| KeyValue::Bytes(c.id.as_bytes())),
        }
    }
}

impl RateConfig {
    fn quota(&self, field: &str) -> Result<Quota, ConfigError> {
        let period = self.per / self.requests.get();
        let quota = Quota::with_period(period).ok_or_else(|| {
            ConfigError::invalid(
                format!("{field}.per"),
                format!("{:?} per {} requests is too short", self.per, self.requests),
            )
        })?;
        Ok(quota.allow_burst(self.burst.unwrap_or(self.requests)))
    }
}

type Direct = RateLimiter<NotKeyed, InMemoryState, MonotonicClock, NoOpMiddleware<Instant>>;

#[derive(Debug)]
struct Descriptor {
    key: KeySource,
    buckets: KeyedBuckets,
}

#[derive(Debug)]
pub(crate) struct Limits {
    clock: MonotonicClock,
    shared: Option<Direct>,
    descriptors: Box<[Descriptor]>,
    hasher: std::hash::RandomState,
    counters: Arc<LocalRateLimitCounters>,
}

impl Limits {
    /// Why the request is refused, if it is.
    fn check(&self, req: &HttpRequest) -> Result<(), Refused> {
        if let Some(l) = &self.shared {
            l.check()
                .map_err(|n| Refused::Wait(n.wait_time_from(self.clock.now())))?;
        }
        for d in self.descriptors.iter() {
            let Some(key) = d.key.value(req) else {
                continue;
            };
            let key = self.hasher.hash_one(key);
            d.buckets.check(key)?;
        }
        Ok(())
    }

    /// The 429 answer to `req` if a limit refuses it, counting the decision.
    pub(crate) fn refuse(&self, req: &HttpRequest) -> Option<HttpResponse> {
        let refused = match self.check(req) {
            Ok(()) => {
                self.counters.allowed.inc();
                return None;
            }
            Err(refused) => refused,
        };
        self.counters.limited.inc();
        let (wait, reason, body) = match refused {
            Refused::Wait(wait) => (wait, "rate_limited", "rate limited\n"),
            Refused::Full => (
                Duration::from_secs(1),
                "rate_limit_keys_full",
                "rate limit key table full\n",
            ),
        };
        let mut resp =
            crate::local_reply::reply(req.headers(), StatusCode::TOO_MANY_REQUESTS, reason, body);
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        resp.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        Some(resp)
    }

    /// Counts these limits' key tables as part of the config build `build`.
    pub(crate) fn adopt(&self, build: usize) {
        for d in self.descriptors.iter() {
            d.buckets.adopt(build);
        }
    }
}

/// Applies [`LocalRateLimit`] to a service.
///
/// # Example
/// ```
/// use std::{num::NonZeroU32, time::Duration};
/// use proxy_core::{matcher::Header, Body, BoxError, HttpRequest};
/// use proxy_filters::local_rate_limit::{
///     DescriptorConfig, KeySource, LocalRateLimitConfig, LocalRateLimitLayer, RateConfig,
/// };
/// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let one_a_minute = RateConfig {
///     requests: NonZeroU32::MIN,
///     per: Duration::from_secs(60),
///     burst: None,
/// };
/// let cfg = LocalRateLimitConfig {
///     descriptors: vec![DescriptorConfig::new(KeySource::Header("x-api-key".parse()?), one_a_minute)],
///     ..Default::default()
/// };
/// let mut svc = ServiceBuilder::new()
///     .layer(LocalRateLimitLayer::try_from(&cfg)?)
///     .service(service_fn(|_req: HttpRequest| async {
///         Ok::<_, BoxError>(http::Response::new(Body::empty()))
///     }));
/// let req = || http::Request::builder().header("x-api-key", "k1").body(Body::empty());
/// assert_eq!(svc.ready().await?.call(req()?).await?.status(), 200);
/// let limited = svc.ready().await?.call(req()?).await?;
/// assert_eq!(limited.status(), 429);
/// assert!(limited.headers().contains_key("retry-after"));
/// # Ok::<_, BoxError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct LocalRateLimitLayer {
    pub(crate) limits: Arc<Limits>,
}

impl LocalRateLimitLayer {
    /// Validates `cfg`, counting in `counters`.
    ///
    /// # Errors
    /// No rate at all, or a rate too fine for the clock (under 1ns per request),
    /// naming the field.
    pub fn new(
        cfg: &LocalRateLimitConfig,
        counters: Arc<LocalRateLimitCounters>,
    ) -> Result<Self, ConfigError> {
        Self::with_build(cfg, counters, 0)
    }

    /// As [`Self::new`], for the config build `build` (an id shared by the filters of
    /// one snapshot build, never 0): the keys gauge counts the newest build's tables.
    pub(crate) fn with_build(
        cfg: &LocalRateLimitConfig,
        counters: Arc<LocalRateLimitCounters>,
        build: usize,
    ) -> Result<Self, ConfigError> {
        if cfg.rate.is_none() && cfg.descriptors.is_empty() {
            return Err(ConfigError::invalid(
                "rate",
                "set rate, descriptors or both",
            ));
        }
        let clock = MonotonicClock;
        let shared = match &cfg.rate {
            Some(r) => Some(RateLimiter::direct_with_clock(
                r.quota("rate")?,
                clock.clone(),
            )),
            None => None,
        };
        let descriptors = cfg
            .descriptors
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let quota = d.rate.quota(&format!("descriptors[{i}].rate"))?;
                Ok(Descriptor {
                    key: d.key.clone(),
                    buckets: KeyedBuckets::new(
                        quota,
                        d.max_keys.get(),
                        d.overflow,
                        counters.clone(),
                        build,
                    ),
                })
            })
            .collect::<Result<Box<[_]>, ConfigError>>()?;
        Ok(Self {
            limits: Arc::new(Limits {
                clock,
                shared,
                descriptors,
                hasher: std::hash::RandomState::new(),
                counters,
            }),
        })
    }
}

impl TryFrom<&LocalRateLimitConfig> for LocalRateLimitLayer {
    type Error = ConfigError;

    /// [`LocalRateLimitLayer::new`] with counters of its own.
    fn try_from(cfg: &LocalRateLimitConfig) -> Result<Self, ConfigError> {
        Self::new(cfg, Arc::default())
    }
}

impl<S> tower_layer::Layer<S> for LocalRateLimitLayer {
    type Service = LocalRateLimit<S>;

    fn layer(&self, inner: S) -> LocalRateLimit<S> {
        LocalRateLimit {
            inner,
            limits: self.limits.clone(),
        }
    }
}

/// Answers 429 past the configured rates (see [`self`]).
#[derive(Debug, Clone)]
pub struct LocalRateLimit<S> {
    inner: S,
    limits: Arc<Limits>,
}

impl<S> Service<HttpRequest> for LocalRateLimit<S>
where
    S: Service<HttpRequest, Response = HttpResponse>,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = LocalOr<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: HttpRequest) -> Self::Future {
        match self.limits.refuse(&req) {
            None => LocalOr::inner(self.inner.call(req)),
            Some(resp) => LocalOr::local(resp),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_rates_are_refused() {
        let cfg: LocalRateLimitConfig =
            proxy_core::config::from_yaml("rate: { requests: 4000000000, per: 1s }").unwrap();
        let e = LocalRateLimitLayer::new(&cfg, Default::default()).unwrap_err();
        assert_eq!(e.field(), "rate.per", "{e}");
        let empty: LocalRateLimitConfig = proxy_core::config::from_yaml("{}").unwrap();
        assert!(LocalRateLimitLayer::new(&empty, Default::default()).is_err());
    }

    #[test]
    fn consumer_descriptor_keys_by_the_auth_filters_consumer() {
        let cfg: LocalRateLimitConfig = proxy_core::config::from_yaml(
            "descriptors: [{ key: consumer, rate: { requests: 1, per: 1h } }]",
        )
        .unwrap();
        let layer = LocalRateLimitLayer::new(&cfg, Default::default()).unwrap();
        let req = |consumer: Option<&str>| {
            let mut req = http::Request::new(proxy_core::Body::empty());
            if let Some(id) = consumer {
                req.extensions_mut().insert(crate::auth::Consumer::new(id));
            }
            req
        };
        let limits = &layer.limits;
        assert!(limits.check(&req(Some("alice"))).is_ok());
        assert!(
            limits.check(&req(Some("alice"))).is_err(),
            "alice's bucket is empty"
        );
        assert!(limits.check(&req(Some("bob"))).is_ok(), "bob has his own");
        assert!(limits.check(&req(None)).is_ok(), "no consumer: not counted");
        assert!(limits.check(&req(None)).is_ok());
    }
}
