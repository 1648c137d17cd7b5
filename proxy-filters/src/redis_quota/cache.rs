//! Keeping a `redis_quota` filter's connection and verdicts across reloads.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
};

use super::{layer::Quota, RedisQuotaConfig, RedisQuotaCounters, RedisQuotaLayer};
use crate::ConfigError;

/// `redis_quota` filters by place (listener, route, name), so that a reload with an
/// unchanged section keeps its Redis connection (no reconnect per config push) and
/// its over-quota verdicts. [`super::register`] uses it. Holds only weak
/// references: a filter lives as long as a snapshot uses it.
///
/// ```
/// use proxy_filters::redis_quota::{QuotaCache, RedisQuotaConfig};
///
/// let cache = QuotaCache::default();
/// let cfg: RedisQuotaConfig = proxy_core::config::from_yaml(
///     "{ redis: { url: 'redis://127.0.0.1:6379' }, key: consumer, limit: 100, window: 1m }",
/// )?;
/// let first = cache.layer("api/echo/", &cfg, "echo", Default::default())?;
/// let reloaded = cache.layer("api/echo/", &cfg, "echo", Default::default())?;
/// assert!(first.same_filter(&reloaded), "one connection, one set of verdicts");
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct QuotaCache {
    entries: Mutex<HashMap<String, (RedisQuotaConfig, Weak<Quota>)>>,
}

/// Renders nothing: the cache is state, kept in the build context.
impl proxy_core::metrics::RenderMetrics for QuotaCache {
    fn render(&self, _out: &mut String) {}
}

impl QuotaCache {
    /// The layer of the filter at `place`: the running one when its section is
    /// unchanged, else a new one (see [`RedisQuotaLayer::new`]).
    ///
    /// # Errors
    /// As [`RedisQuotaLayer::new`].
    pub fn layer(
        &self,
        place: &str,
        cfg: &RedisQuotaConfig,
        name: &str,
        counters: Arc<RedisQuotaCounters>,
    ) -> Result<RedisQuotaLayer, ConfigError> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, (_, weak)| weak.strong_count() > 0);
        if let Some((old, weak)) = entries.get(place) {
            if old == cfg {
                if let Some(quota) = weak.upgrade() {
                    return Ok(RedisQuotaLayer::from_quota(quota));
                }
            }
        }
        let layer = RedisQuotaLayer::new(cfg, name, counters)?;
        entries.insert(place.to_owned(), (cfg.clone(), layer.downgrade()));
        Ok(layer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_section_keeps_its_filter() {
        let cache = QuotaCache::default();
        let cfg: RedisQuotaConfig = proxy_core::config::from_yaml(
            "{ redis: { url: 'redis://127.0.0.1:1' }, limit: 5, window: 1m }",
        )
        .unwrap();
        let a = cache.layer("l/r/q", &cfg, "q", Default::default()).unwrap();
        let b = cache.layer("l/r/q", &cfg, "q", Default::default()).unwrap();
        assert!(a.same_filter(&b));
        let mut changed = cfg.clone();
        changed.limit = std::num::NonZeroU64::new(6).unwrap();
        let c = cache
            .layer("l/r/q", &changed, "q", Default::default())
            .unwrap();
        assert!(!a.same_filter(&c));
        let elsewhere = cache
            .layer("l/other/q", &cfg, "q", Default::default())
            .unwrap();
        assert!(!a.same_filter(&elsewhere), "another place, another filter");
    }
}
