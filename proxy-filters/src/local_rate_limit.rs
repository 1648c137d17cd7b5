//! Local rate limiting with governor (GCRA): one bucket for everything this filter
//! sees (set it per route for a per-route limit), and keyed buckets per descriptor
//! (a header value such as an API key or a consumer id set by an auth filter, the
//! source IP, the mTLS identity as the consumer).
//!
//! A limited request is answered `429 Too Many Requests` with `retry-after` (whole
//! seconds, at least 1) and `x-proxy-error: rate_limited`; RPC codecs map the 429 to
//! their overload status (gRPC `RESOURCE_EXHAUSTED`, Bolt/Dubbo server busy).
//!
//! Keyed buckets live in a sharded table bounded by `max_keys`: keys are stored as
//! 64-bit keyed hashes (no copy of the header value), idle keys (whose bucket is full
//! again) are dropped when a shard fills, and when a shard is full of busy keys new
//! keys share one overflow bucket (counted in `proxy_filters_rate_limit_overflow_total`).
//! A request without the descriptor's key (header absent) is not limited by it.
//!
//! # Example
//! ```
//! use proxy_filters::local_rate_limit::{LocalRateLimitConfig, LocalRateLimitLayer};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let cfg: LocalRateLimitConfig = proxy_filters::config::from_yaml("test", r#"
//! descriptors:
//!   - key: { header: x-api-key }
//!     rate: { requests: 1, per: 1m }
//! "#).unwrap();
//! let mut svc = ServiceBuilder::new()
//!     .layer(LocalRateLimitLayer::new(&cfg, Default::default()).unwrap())
//!     .service_fn(|_req: proxy_core::HttpRequest| async {
//!         Ok::<_, proxy_core::BoxError>(http::Response::new(proxy_core::Body::empty()))
//!     });
//! let req = || http::Request::builder().header("x-api-key", "k1").body(proxy_core::Body::empty()).unwrap();
//! assert_eq!(svc.ready().await.unwrap().call(req()).await.unwrap().status(), 200);
//! let limited = svc.ready().await.unwrap().call(req()).await.unwrap();
//! assert_eq!(limited.status(), 429);
//! assert!(limited.headers().contains_key("retry-after"));
//! # });
//! ```

use std::{
    collections::HashMap,
    hash::BuildHasher,
    num::{NonZeroU32, NonZeroU64, NonZeroUsize},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use governor::{
    clock::{Clock, MonotonicClock},
    middleware::NoOpMiddleware,
    nanos::Nanos,
    state::{InMemoryState, NotKeyed, StateStore},
    Quota, RateLimiter,
};
use http::{HeaderValue, StatusCode};
use proxy_core::{HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use tower_service::Service;

use crate::{local_reply::LocalOr, matcher::Header, metrics::RateLimitCounters, ConfigError};

/// The registered name.
pub const NAME: &str = "local_rate_limit";

/// The `local_rate_limit` filter's section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

impl RateConfig {
    fn quota(&self, field: &str) -> Result<Quota, ConfigError> {
        let period = self.per / self.requests.get();
        let quota = Quota::with_period(period).ok_or_else(|| {
            ConfigError::field(
                NAME,
                format!("{field}.per"),
                format!("{:?} per {} requests is too short", self.per, self.requests),
            )
        })?;
        Ok(quota.allow_burst(self.burst.unwrap_or(self.requests)))
    }
}

type Direct = RateLimiter<NotKeyed, InMemoryState, MonotonicClock, NoOpMiddleware<Instant>>;
type Keyed = RateLimiter<u64, BoundedStore, MonotonicClock, NoOpMiddleware<Instant>>;

#[derive(Debug)]
struct Descriptor {
    key: KeySource,
    limiter: Keyed,
}

#[derive(Debug)]
struct Limits {
    clock: MonotonicClock,
    shared: Option<Direct>,
    descriptors: Box<[Descriptor]>,
    hasher: std::hash::RandomState,
    counters: Arc<RateLimitCounters>,
}

impl Limits {
    /// `Err(wait)` when limited.
    fn check(&self, req: &HttpRequest) -> Result<(), Duration> {
        if let Some(l) = &self.shared {
            l.check().map_err(|n| n.wait_time_from(self.clock.now()))?;
        }
        for d in self.descriptors.iter() {
            let key = match &d.key {
                KeySource::Header(h) => match req.headers().get(&h.0) {
                    Some(v) => self.hash(v),
                    None => continue,
                },
                KeySource::SourceIp => match req
                    .extensions()
                    .get::<proxy_core::proxy::ConnInfo>()
                    .and_then(|c| c.peer)
                {
                    Some(p) => self.hasher.hash_one(p.ip()),
                    None => self.hasher.hash_one(crate::matcher::NO_IP),
                },
                KeySource::Identity => {
                    let peer = req
                        .extensions()
                        .get::<proxy_core::connection::TlsInfo>()
                        .and_then(|t| t.peer.as_ref());
                    let id = peer.and_then(|p| {
                        p.uri_sans
                            .first()
                            .or(p.dns_sans.first())
                            .or(p.subject.as_ref())
                    });
                    match id {
                        Some(id) => self.hasher.hash_one(id.as_bytes()),
                        None => continue,
                    }
                }
            };
            d.limiter
                .check_key(&key)
                .map_err(|n| n.wait_time_from(self.clock.now()))?;
        }
        Ok(())
    }

    fn hash(&self, v: &HeaderValue) -> u64 {
        self.hasher.hash_one(v.as_bytes())
    }
}

/// Applies [`LocalRateLimit`] to a service.
#[derive(Debug, Clone)]
pub struct LocalRateLimitLayer {
    limits: Arc<Limits>,
}

impl LocalRateLimitLayer {
    /// Validates `cfg`.
    ///
    /// # Errors
    /// No rate at all, or a rate too fine for the clock (under 1ns per request).
    pub fn new(
        cfg: &LocalRateLimitConfig,
        counters: Arc<RateLimitCounters>,
    ) -> Result<Self, ConfigError> {
        if cfg.rate.is_none() && cfg.descriptors.is_empty() {
            return Err(ConfigError::field(
                NAME,
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
                let store = BoundedStore::new(d.max_keys.get(), counters.clone());
                Ok(Descriptor {
                    key: d.key.clone(),
                    limiter: RateLimiter::new(quota, store, clock.clone()),
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

/// Limiters by filter, so that a reload with an unchanged section keeps its buckets
/// (a reload must not hand every client a fresh burst). [`crate::register`] uses it
/// for sections with a `name`; filters with the same name on one listener share. Holds only weak references:
/// a limiter lives as long as a snapshot uses it.
#[derive(Debug, Default)]
pub struct LimiterCache {
    entries: std::sync::Mutex<HashMap<String, (LocalRateLimitConfig, std::sync::Weak<Limits>)>>,
}

/// Renders nothing: the cache is state, kept in the build context.
impl proxy_core::metrics::RenderMetrics for LimiterCache {
    fn render(&self, _out: &mut String) {}
}

impl LimiterCache {
    /// The layer for the filter `key`: the running one when its section is
    /// unchanged, else a new one.
    ///
    /// # Errors
    /// As [`LocalRateLimitLayer::new`].
    pub fn layer(
        &self,
        key: &str,
        cfg: &LocalRateLimitConfig,
        counters: Arc<RateLimitCounters>,
    ) -> Result<LocalRateLimitLayer, ConfigError> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, (_, weak)| weak.strong_count() > 0);
        if let Some((old, weak)) = entries.get(key) {
            if old == cfg {
                if let Some(limits) = weak.upgrade() {
                    return Ok(LocalRateLimitLayer { limits });
                }
            }
        }
        let layer = LocalRateLimitLayer::new(cfg, counters)?;
        entries.insert(key.to_owned(), (cfg.clone(), Arc::downgrade(&layer.limits)));
        Ok(layer)
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
        match self.limits.check(&req) {
            Ok(()) => {
                self.limits.counters.allowed.inc();
                LocalOr::inner(self.inner.call(req))
            }
            Err(wait) => {
                self.limits.counters.limited.inc();
                let mut resp = crate::local_reply::reply(
                    req.headers(),
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "rate limited\n",
                );
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                resp.headers_mut()
                    .insert(http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
                LocalOr::local(resp)
            }
        }
    }
}

// === impl BoundedStore ===

const SHARDS: usize = 16;

/// A governor state store with at most `max_keys` keys (plus one overflow bucket),
/// sharded so that lookups of known keys take a shard read lock only.
#[derive(Debug)]
pub(crate) struct BoundedStore {
    shards: Box<[RwLock<Shard>]>,
    per_shard: usize,
    overflow: AtomicU64,
    start: Instant,
    counters: Arc<RateLimitCounters>,
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<u64, AtomicU64>,
    last_sweep: Option<Instant>,
}

impl BoundedStore {
    pub(crate) fn new(max_keys: usize, counters: Arc<RateLimitCounters>) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            per_shard: max_keys.div_ceil(SHARDS).max(1),
            overflow: AtomicU64::new(0),
            // Taken before the limiter's own start: a bucket's time here is never
            // earlier than the limiter's, so "idle" below is conservative.
            start: Instant::now(),
            counters,
        }
    }
}

/// The GCRA update on one cell, as governor's own in-memory state does it: a CAS
/// loop over the theoretical arrival time (0 = never used).
fn measure<T, F, E>(cell: &AtomicU64, f: &F) -> Result<T, E>
where
    F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
{
    let mut prev = cell.load(Ordering::Acquire);
    loop {
        let (t, next) = f(NonZeroU64::new(prev).map(|n| Nanos::new(n.get())))?;
        match cell.compare_exchange_weak(prev, next.as_u64(), Ordering::Release, Ordering::Relaxed)
        {
            Ok(_) => return Ok(t),
            Err(p) => prev = p,
        }
    }
}

impl StateStore for BoundedStore {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let shard = &self.shards[(*key as usize) % SHARDS];
        {
            let read = shard.read().unwrap_or_else(|e| e.into_inner());
            if let Some(cell) = read.map.get(key) {
                return measure(cell, &f);
            }
        }
        let mut write = shard.write().unwrap_or_else(|e| e.into_inner());
        if !write.map.contains_key(key) && write.map.len() >= self.per_shard {
            let now = Instant::now();
            // Sweep idle keys at most once a second per shard: a bucket whose
            // theoretical arrival time has passed is full again, like a new one.
            if write
                .last_sweep
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
            {
                write.last_sweep = Some(now);
                let elapsed = now.duration_since(self.start).as_nanos() as u64;
                let before = write.map.len();
                write
                    .map
                    .retain(|_, tat| tat.load(Ordering::Relaxed) > elapsed);
                let removed = before - write.map.len();
                for _ in 0..removed {
                    self.counters.keys.dec();
                }
            }
            if write.map.len() >= self.per_shard {
                drop(write);
                self.counters.overflow.inc();
                return measure(&self.overflow, &f);
            }
        }
        let cell = write.map.entry(*key).or_insert_with(|| {
            self.counters.keys.inc();
            AtomicU64::new(0)
        });
        measure(cell, &f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_is_bounded_and_overflows() {
        let counters = Arc::new(RateLimitCounters::default());
        let quota = Quota::per_second(NonZeroU32::new(1).unwrap());
        let limiter: Keyed = RateLimiter::new(
            quota,
            BoundedStore::new(32, counters.clone()),
            MonotonicClock,
        );
        for k in 0..10_000u64 {
            let _ = limiter.check_key(&k);
        }
        assert!(counters.keys.get() <= 32, "{}", counters.keys.get());
        assert!(counters.overflow.get() > 0);
        // Key 0 was tracked first and is limited on its own bucket.
        assert!(limiter.check_key(&0).is_err());
    }

    #[test]
    fn cache_keeps_buckets_of_an_unchanged_section() {
        let cache = LimiterCache::default();
        let cfg: LocalRateLimitConfig =
            crate::config::from_yaml("t", "rate: {requests: 1, per: 1h}").unwrap();
        let a = cache.layer("l/x", &cfg, Default::default()).unwrap();
        let b = cache.layer("l/x", &cfg, Default::default()).unwrap();
        assert!(Arc::ptr_eq(&a.limits, &b.limits));
        let changed: LocalRateLimitConfig =
            crate::config::from_yaml("t", "rate: {requests: 2, per: 1h}").unwrap();
        let c = cache.layer("l/x", &changed, Default::default()).unwrap();
        assert!(!Arc::ptr_eq(&a.limits, &c.limits));
        drop((a, b, c));
        let d = cache.layer("l/x", &cfg, Default::default()).unwrap();
        assert_eq!(Arc::strong_count(&d.limits), 1, "nothing kept once unused");
    }

    #[test]
    fn bad_rates_are_refused() {
        let cfg: LocalRateLimitConfig =
            crate::config::from_yaml("test", "rate: { requests: 4000000000, per: 1s }").unwrap();
        let e = LocalRateLimitLayer::new(&cfg, Default::default()).unwrap_err();
        assert!(
            e.to_string().starts_with("local_rate_limit.rate.per"),
            "{e}"
        );
        let empty: LocalRateLimitConfig = crate::config::from_yaml("test", "{}").unwrap();
        assert!(LocalRateLimitLayer::new(&empty, Default::default()).is_err());
    }
}
