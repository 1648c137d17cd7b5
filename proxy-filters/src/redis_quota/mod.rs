//! Quotas shared by every gateway of a fleet, counted in Redis: `limit` requests
//! per `window` per key (a consumer, a header value, the source IP, the mTLS
//! identity, or one quota for everything through the filter, i.e. per route or API
//! when it is a route's filter). The key is found as the `local_rate_limit`
//! descriptors find theirs ([`KeySource`]); requests without it are not counted.
//!
//! # Counting
//!
//! Windows are fixed and aligned to the Unix epoch (a `1m` window starts at every
//! whole minute, on every gateway). Each request adds one to
//! `<prefix>:<source>:<value>:<window start, Unix seconds>` (default prefix
//! `quota:<name>`) in one round trip: a Lua script (`EVALSHA`, `EVAL` after
//! `NOSCRIPT`) that `INCR`s the counter and, on its first count, sets it to expire
//! one second after its window. A count within `limit` passes with
//! `x-ratelimit-limit`, `x-ratelimit-remaining` and `x-ratelimit-reset` (seconds to
//! the window's end) on the answer; past it the request is answered `429` with the
//! same headers, `retry-after` and `x-proxy-error: rate_limited` (gRPC:
//! `RESOURCE_EXHAUSTED`), and the key is remembered over quota until the window ends:
//! its next requests get the 429 without a Redis round trip (at most
//! `max_cached_keys` keys are remembered; others ask Redis, which still refuses).
//! Fixed windows admit up to twice `limit` across a window boundary.
//!
//! # When Redis cannot answer
//!
//! Each request waits at most `redis.timeout` (default 50ms) for its count,
//! connecting and waiting for one of the `redis.max_in_flight` call slots included.
//! A lost connection is re-established in the background with exponential back-off;
//! nothing blocks a worker thread. A call abandoned at its deadline may still run
//! when a slow Redis gets to it, so that request counts although it was not
//! admitted on a count. Without a count in time, `failure_mode` decides:
//!
//! - `open` (the default): the request goes on, without quota headers, held only by
//!   the `local` limit. Use it where availability matters more than the quota.
//! - `closed`: the request is answered `503` with `retry-after: 1` and
//!   `x-proxy-error: quota_unavailable`. 503 rather than 429: the consumer is not
//!   known to be over quota, the proxy cannot tell, and clients treat a 503 as the
//!   service's failure (retry later or elsewhere), not their own.
//!
//! # The local floor
//!
//! `local` is a [`crate::local_rate_limit`] section checked on **every** request,
//! before Redis: a per-gateway limit that always holds, so that a burst is shed
//! without a Redis round trip and a gateway failing open still has a bound. Checking
//! it only while Redis is down would hand every client a full local burst at each
//! outage, at the moment the backend is least protected; checked always, it must be
//! set at or above each gateway's share of the fleet quota (e.g. the per-window quota
//! divided by the gateways, with headroom for uneven balancing). A request it refuses
//! is answered as the local limiter answers (429) and not counted in Redis.
//!
//! Metrics (`/stats/prometheus`, `filter` label):
//! `proxy_filters_redis_quota_decisions_total{decision="allowed|limited|limited_cached|limited_local|unkeyed|failed_open|failed_closed"}`,
//! `proxy_filters_redis_quota_redis_errors_total{kind="timeout|error"}` and the
//! histogram `proxy_filters_redis_quota_redis_duration_seconds`.
//!
//! ```yaml
//! http_filters:
//!   - typed: jwt_auth              # sets the consumer
//!     config: { ... }
//!   - typed: redis_quota
//!     config:
//!       name: echo
//!       redis: { url: "redis://10.0.0.5:6379/0", timeout: 50ms }
//!       key: consumer
//!       limit: 1000
//!       window: 1m
//!       failure_mode: open
//!       local: { descriptors: [{ key: consumer, rate: { requests: 100, per: 1s } }] }
//! ```

mod backend;
mod cache;
mod config;
mod layer;
pub mod metrics;
mod verdicts;
mod window;

use proxy_core::Registry;

pub use cache::QuotaCache;
pub use config::{FailureMode, RedisConfig, RedisQuotaConfig};
pub use layer::{
    RedisQuota, RedisQuotaLayer, ResponseFuture, LIMIT_HEADER, REMAINING_HEADER, RESET_HEADER,
};
pub use metrics::{RedisQuotaCounters, RedisQuotaMetrics};

#[cfg(doc)]
use crate::local_rate_limit::KeySource;

/// The registered name.
pub const NAME: &str = "redis_quota";

/// Registers `redis_quota` (an HTTP filter, per listener or per route) in
/// `registry`. Its metrics are kept under [`metrics::METRICS_KEY`], named by the
/// section's `name`, else the route's (a route's own filter), else the listener's;
/// a reload that leaves a filter's section unchanged keeps the filter (its Redis
/// connection and over-quota verdicts, [`QuotaCache`]).
pub fn register(registry: &mut Registry) {
    registry.register_filter(NAME, |cfg, ctx| {
        let c: RedisQuotaConfig = cfg.parse()?;
        let name = c
            .name
            .as_deref()
            .or(ctx.route)
            .or(ctx.listener)
            .unwrap_or(NAME)
            .to_owned();
        let counters = ctx
            .metrics::<RedisQuotaMetrics>(metrics::METRICS_KEY)
            .get(&name);
        // An unchanged section keeps its connection and verdicts across reloads.
        let place = format!(
            "{}/{}/{}",
            ctx.listener.unwrap_or_default(),
            ctx.route.unwrap_or_default(),
            c.name.as_deref().unwrap_or_default()
        );
        let layer = ctx
            .metrics::<QuotaCache>("filters/redis_quota/state")
            .layer(&place, &c, &name, counters)?;
        Ok(std::sync::Arc::new(move |inner: proxy_core::BoxHttp| {
            proxy_core::BoxHttp::new(tower_layer::Layer::layer(&layer, inner))
        }))
    });
}
