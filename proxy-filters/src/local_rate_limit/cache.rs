//! Keeping a limiter's buckets across reloads.

use std::{collections::HashMap, sync::Arc};

use super::{Limits, LocalRateLimitConfig, LocalRateLimitLayer};
use crate::{metrics::LocalRateLimitCounters, ConfigError};

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
        counters: Arc<LocalRateLimitCounters>,
    ) -> Result<LocalRateLimitLayer, ConfigError> {
        self.layer_for_build(key, cfg, counters, 0)
    }

    /// As [`Self::layer`], for the config build `build` (see
    /// [`LocalRateLimitLayer::with_build`]).
    pub(crate) fn layer_for_build(
        &self,
        key: &str,
        cfg: &LocalRateLimitConfig,
        counters: Arc<LocalRateLimitCounters>,
        build: usize,
    ) -> Result<LocalRateLimitLayer, ConfigError> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, (_, weak)| weak.strong_count() > 0);
        if let Some((old, weak)) = entries.get(key) {
            if old == cfg {
                if let Some(limits) = weak.upgrade() {
                    limits.adopt(build);
                    return Ok(LocalRateLimitLayer { limits });
                }
            }
        }
        let layer = LocalRateLimitLayer::with_build(cfg, counters, build)?;
        entries.insert(key.to_owned(), (cfg.clone(), Arc::downgrade(&layer.limits)));
        Ok(layer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_keeps_buckets_of_an_unchanged_section() {
        let cache = LimiterCache::default();
        let cfg: LocalRateLimitConfig =
            proxy_core::config::from_yaml("rate: {requests: 1, per: 1h}").unwrap();
        let a = cache.layer("l/x", &cfg, Default::default()).unwrap();
        let b = cache.layer("l/x", &cfg, Default::default()).unwrap();
        assert!(Arc::ptr_eq(&a.limits, &b.limits));
        let changed: LocalRateLimitConfig =
            proxy_core::config::from_yaml("rate: {requests: 2, per: 1h}").unwrap();
        let c = cache.layer("l/x", &changed, Default::default()).unwrap();
        assert!(!Arc::ptr_eq(&a.limits, &c.limits));
        drop((a, b, c));
        let d = cache.layer("l/x", &cfg, Default::default()).unwrap();
        assert_eq!(Arc::strong_count(&d.limits), 1, "nothing kept once unused");
    }
}
